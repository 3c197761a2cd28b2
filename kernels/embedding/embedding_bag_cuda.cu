// CUDA twin of kernels/embedding/embedding_bag.h. Forward: one warp per sample, its lanes across
// the embedding dimension, each lane adding the bag's rows in order. Backward: one warp per
// distinct table row, adding that row's occurrences in the order given. No atomics in either, so
// both give the same bits on every run; the opt-in embedding_bag_backward_atomic is the exception.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/embedding/embedding_bag.h"
#include "kernels/embedding/embedding_plan_math.h"

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

__global__ void embedding_bag_backward_kernel(
    const float* d_out, std::int64_t out_stride, std::int64_t dim, const std::int64_t* offsets,
    Pooling pooling, const std::int64_t* occurrence_offsets, const std::int64_t* occurrence_samples,
    const std::int64_t* num_unique_device, std::int64_t capacity, float* row_gradients) {
  // The grid covers the capacity; the count, when it lives on the device, trims it here.
  std::int64_t num_unique = capacity;
  if (num_unique_device != nullptr) {
    const std::int64_t count = *num_unique_device;
    num_unique = count < 0 ? 0 : (count < capacity ? count : capacity);
  }
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
            embedding_math::bag_gradient_scale<float>(pooling, offsets[b + 1] - offsets[b]);
        // Product and sum rounded separately, as the CPU twin does: nvcc would otherwise contract
        // them into one fused multiply-add, and with mean pooling (scale = 1 / bag size) the bits
        // would differ from the CPU backward's and the host plan's promise of equal bits.
        total = __fadd_rn(total, __fmul_rn(scale, d_out[b * out_stride + j]));
      }
      gradient[j] = total;
    }
  }
}

// One thread per (id position, column): the position's share of its distinct row's gradient,
// added with atomicAdd (opt-in: the order of the additions varies between runs).
__global__ void embedding_bag_backward_atomic_kernel(const float* d_out, std::int64_t out_stride,
                                                     std::int64_t dim, const std::int64_t* offsets,
                                                     std::int64_t batch, Pooling pooling,
                                                     const std::int64_t* distinct_index_of_position,
                                                     std::int64_t num_ids, float* row_gradients) {
  const std::int64_t total = num_ids * dim;
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < total;
       i += stride) {
    const std::int64_t p = i / dim, j = i % dim;
    const std::int64_t b = embedding_math::segment_of(offsets, batch, p);
    const float scale =
        embedding_math::bag_gradient_scale<float>(pooling, offsets[b + 1] - offsets[b]);
    atomicAdd(row_gradients + distinct_index_of_position[p] * dim + j,
              scale * d_out[b * out_stride + j]);
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
      d_out, out_stride, dim, offsets, pooling, occurrence_offsets, occurrence_samples, nullptr,
      num_unique, row_gradients);
  DRGRAD_CUDA_CHECK_LAUNCH(embedding_bag_backward_kernel);
}

void embedding_bag_backward_with_device_count(const Context& ctx, const float* d_out,
                                              std::int64_t out_stride, std::int64_t dim,
                                              const std::int64_t* offsets, Pooling pooling,
                                              const std::int64_t* occurrence_offsets,
                                              const std::int64_t* occurrence_samples,
                                              const std::int64_t* num_unique_device,
                                              std::int64_t capacity, float* row_gradients) {
  check_dimensions("embedding_bag_backward_with_device_count", dim, capacity, out_stride);
  if (capacity == 0 || dim == 0) return;
  embedding_bag_backward_kernel<<<grid_for_warps(capacity), kBlockSize, 0, stream_of(ctx)>>>(
      d_out, out_stride, dim, offsets, pooling, occurrence_offsets, occurrence_samples,
      num_unique_device, capacity, row_gradients);
  DRGRAD_CUDA_CHECK_LAUNCH(embedding_bag_backward_kernel);
}

void embedding_bag_backward_atomic(const Context& ctx, const float* d_out, std::int64_t out_stride,
                                   std::int64_t dim, const std::int64_t* offsets,
                                   std::int64_t batch, Pooling pooling,
                                   const std::int64_t* distinct_index_of_position,
                                   std::int64_t num_ids, std::int64_t gradient_rows,
                                   float* row_gradients) {
  check_dimensions("embedding_bag_backward_atomic", dim, gradient_rows, out_stride);
  const cudaStream_t stream = stream_of(ctx);
  if (gradient_rows == 0 || dim == 0) return;
  DRGRAD_CUDA_CHECK(cudaMemsetAsync(
      row_gradients, 0, static_cast<std::size_t>(gradient_rows * dim) * sizeof(float), stream));
  if (num_ids == 0) return;
  embedding_bag_backward_atomic_kernel<<<grid_for(num_ids * dim), kBlockSize, 0, stream>>>(
      d_out, out_stride, dim, offsets, batch, pooling, distinct_index_of_position, num_ids,
      row_gradients);
  DRGRAD_CUDA_CHECK_LAUNCH(embedding_bag_backward_atomic_kernel);
}

}  // namespace drgrad::kernels::cuda
