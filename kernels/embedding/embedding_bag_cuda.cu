// CUDA twin of kernels/embedding/embedding_bag.h. Forward: one warp per sample, its lanes across
// the embedding dimension, each lane adding the bag's rows in order. Backward: one warp per
// distinct table row, adding that row's occurrences in the order given. No atomics anywhere, so
// both passes give the same bits on every run.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/embedding/embedding_bag.h"

namespace drgrad::kernels::cuda {
namespace {

constexpr int kWarpSize = 32;

// Enough blocks for one warp per item (kernels loop beyond the cap).
unsigned grid_for_warps(std::int64_t items) {
  return grid_for(items * kWarpSize);
}

// Where this thread's warp starts in a grid-stride loop over warp-sized items.
struct WarpGrid {
  int lane;
  std::int64_t first;
  std::int64_t stride;
};
__device__ WarpGrid warp_grid() {
  return {static_cast<int>(threadIdx.x % kWarpSize),
          (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) / kWarpSize,
          std::int64_t(gridDim.x) * blockDim.x / kWarpSize};
}

__global__ void embedding_bag_forward_kernel(const float* table, std::int64_t dim,
                                             const std::int64_t* rows, const std::int64_t* offsets,
                                             std::int64_t batch, Pooling pooling, float* out,
                                             std::int64_t out_stride) {
  const WarpGrid warps = warp_grid();
  const int lane = warps.lane;
  for (std::int64_t b = warps.first; b < batch; b += warps.stride) {
    const std::int64_t begin = offsets[b], end = offsets[b + 1];
    const float scale =
        pooling == Pooling::kMean && end > begin ? 1.f / static_cast<float>(end - begin) : 1.f;
    float* target = out + b * out_stride;
    for (std::int64_t j = lane; j < dim; j += kWarpSize) {
      float total = 0.f;
      for (std::int64_t i = begin; i < end; ++i) total += table[rows[i] * dim + j];
      target[j] = pooling == Pooling::kMean ? total * scale : total;
    }
  }
}

__global__ void embedding_bag_backward_kernel(const float* d_out, std::int64_t out_stride,
                                              std::int64_t dim, const std::int64_t* offsets,
                                              Pooling pooling,
                                              const std::int64_t* occurrence_offsets,
                                              const std::int64_t* occurrence_samples,
                                              std::int64_t num_unique, float* row_gradients) {
  const WarpGrid warps = warp_grid();
  const int lane = warps.lane;
  for (std::int64_t u = warps.first; u < num_unique; u += warps.stride) {
    const std::int64_t begin = occurrence_offsets[u], end = occurrence_offsets[u + 1];
    float* gradient = row_gradients + u * dim;
    for (std::int64_t j = lane; j < dim; j += kWarpSize) {
      float total = 0.f;
      for (std::int64_t o = begin; o < end; ++o) {
        const std::int64_t b = occurrence_samples[o];
        const float scale =
            pooling == Pooling::kMean ? 1.f / static_cast<float>(offsets[b + 1] - offsets[b]) : 1.f;
        total += scale * d_out[b * out_stride + j];
      }
      gradient[j] = total;
    }
  }
}

void check_dimensions(const char* op, std::int64_t dim, std::int64_t count, std::int64_t stride) {
  if (dim < 0 || count < 0 || stride < dim) {
    throw std::invalid_argument(std::string(op) + ": dim " + std::to_string(dim) + ", count " +
                                std::to_string(count) + ", out_stride " + std::to_string(stride) +
                                ": need dim >= 0, count >= 0 and out_stride >= dim");
  }
}

}  // namespace

void embedding_bag_forward(const Context& ctx, const float* table, std::int64_t dim,
                           const std::int64_t* rows, const std::int64_t* offsets,
                           std::int64_t batch, Pooling pooling, float* out,
                           std::int64_t out_stride) {
  check_dimensions("embedding_bag_forward", dim, batch, out_stride);
  if (batch == 0 || dim == 0) return;
  embedding_bag_forward_kernel<<<grid_for_warps(batch), kBlockSize, 0, stream_of(ctx)>>>(
      table, dim, rows, offsets, batch, pooling, out, out_stride);
  DRGRAD_CUDA_CHECK_LAUNCH(embedding_bag_forward_kernel);
}

void embedding_bag_backward(const Context& ctx, const float* d_out, std::int64_t out_stride,
                            std::int64_t dim, const std::int64_t* offsets, Pooling pooling,
                            const std::int64_t* occurrence_offsets,
                            const std::int64_t* occurrence_samples, std::int64_t num_unique,
                            float* row_gradients) {
  check_dimensions("embedding_bag_backward", dim, num_unique, out_stride);
  if (num_unique == 0 || dim == 0) return;
  embedding_bag_backward_kernel<<<grid_for_warps(num_unique), kBlockSize, 0, stream_of(ctx)>>>(
      d_out, out_stride, dim, offsets, pooling, occurrence_offsets, occurrence_samples, num_unique,
      row_gradients);
  DRGRAD_CUDA_CHECK_LAUNCH(embedding_bag_backward_kernel);
}

}  // namespace drgrad::kernels::cuda
