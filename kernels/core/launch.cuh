// Launch helpers shared by the CUDA twins: block size, grid size for element-wise kernels, and
// the stream of an op's context.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/core/device.h"
#include "kernels/core/stream.h"

namespace drgrad::kernels::cuda {

inline constexpr int kBlockSize = 256;

// Enough blocks to cover n elements with kBlockSize threads, capped (kernels use grid-stride
// loops beyond the cap).
inline unsigned grid_for(std::int64_t n) {
  const std::int64_t blocks = (n + kBlockSize - 1) / kBlockSize;
  return static_cast<unsigned>(std::clamp<std::int64_t>(blocks, 1, 65535 * 8));
}

// Sum of `value` over the block (blockDim.x == kBlockSize, a power of two), returned to every
// thread. The tree has a fixed shape, so the result never depends on scheduling. Every thread of
// the block must call it; calls may follow each other directly.
template <typename T>
__device__ T block_sum(T value) {
  __shared__ T partial[kBlockSize];
  partial[threadIdx.x] = value;
  __syncthreads();
  for (int half = kBlockSize / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  const T total = partial[0];
  // Every thread has read the total before a following call may overwrite partial[].
  __syncthreads();
  return total;
}

// The context's stream, or, when it names none, the calling thread's current stream on its
// device (kernels/core/stream.h; the legacy default stream unless a caller such as the trainer
// made another current).
inline cudaStream_t stream_of(const Context& ctx) {
  return static_cast<cudaStream_t>(ctx.stream != nullptr ? ctx.stream : current_stream(ctx.device));
}

}  // namespace drgrad::kernels::cuda
