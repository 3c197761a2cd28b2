// CUDA twin of kernels/vector/vector_ops.h: element-wise copies and axpy (grid-stride loops), and
// a dot product reduced in double in two passes of fixed shape (a fixed number of blocks, a fixed
// tree in each), so the same inputs give the same bits on every run and every device.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/core/memory.h"
#include "kernels/vector/vector_ops.h"

namespace drgrad::kernels::cuda {
namespace {

// The first pass of dot always runs this many blocks, whatever the size or the device, so the
// grouping of terms (and therefore the rounding) never changes.
constexpr int kDotBlocks = 256;

__global__ void copy_rows_kernel(const float* src, std::int64_t src_stride, float* dst,
                                 std::int64_t dst_stride, std::int64_t rows, std::int64_t cols,
                                 bool accumulate) {
  const std::int64_t total = rows * cols;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < total;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / cols, c = i - r * cols;
    const float value = src[r * src_stride + c];
    float& target = dst[r * dst_stride + c];
    target = accumulate ? target + value : value;
  }
}

__global__ void axpy_kernel(std::int64_t n, float alpha, const float* x, float* y) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    y[i] += alpha * x[i];
  }
}

// alpha is read once per thread from device memory, converted as the host path converts it.
__global__ void axpy_scalar_in_memory_kernel(std::int64_t n, const double* alpha, const float* x,
                                             float* y) {
  const float scale = static_cast<float>(*alpha);
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    y[i] += scale * x[i];
  }
}

__global__ void multiply_kernel(std::int64_t n, float alpha, const float* a, const float* b,
                                float* out) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    out[i] = alpha * a[i] * b[i];
  }
}

// Pass 1: block k sums the products at indices congruent to its threads modulo the grid's
// thread count, each thread in increasing order, then the block's tree.
__global__ void dot_partials_kernel(std::int64_t n, const float* x, const float* y,
                                    double* block_sums) {
  double local_sum = 0.0;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    local_sum += static_cast<double>(x[i]) * static_cast<double>(y[i]);
  }
  const double total = block_sum(local_sum);
  if (threadIdx.x == 0) block_sums[blockIdx.x] = total;
}

// Pass 2: one block adds the kDotBlocks partial sums.
__global__ void dot_total_kernel(const double* block_sums, double* result) {
  double local_sum = 0.0;
  for (int i = threadIdx.x; i < kDotBlocks; i += blockDim.x) local_sum += block_sums[i];
  const double total = block_sum(local_sum);
  if (threadIdx.x == 0) *result = total;
}

}  // namespace

void copy_rows(const Context& ctx, const float* src, std::int64_t src_stride, float* dst,
               std::int64_t dst_stride, std::int64_t rows, std::int64_t cols, bool accumulate) {
  if (rows <= 0 || cols <= 0) return;
  copy_rows_kernel<<<grid_for(rows * cols), kBlockSize, 0, stream_of(ctx)>>>(
      src, src_stride, dst, dst_stride, rows, cols, accumulate);
  DRGRAD_CUDA_CHECK_LAUNCH(copy_rows_kernel);
}

void axpy(const Context& ctx, std::int64_t n, float alpha, const float* x, float* y) {
  if (n <= 0) return;
  axpy_kernel<<<grid_for(n), kBlockSize, 0, stream_of(ctx)>>>(n, alpha, x, y);
  DRGRAD_CUDA_CHECK_LAUNCH(axpy_kernel);
}

void axpy_scalar_in_memory(const Context& ctx, std::int64_t n, const double* alpha, const float* x,
                           float* y) {
  if (n <= 0) return;
  axpy_scalar_in_memory_kernel<<<grid_for(n), kBlockSize, 0, stream_of(ctx)>>>(n, alpha, x, y);
  DRGRAD_CUDA_CHECK_LAUNCH(axpy_scalar_in_memory_kernel);
}

void multiply(const Context& ctx, std::int64_t n, float alpha, const float* a, const float* b,
              float* out) {
  if (n <= 0) return;
  multiply_kernel<<<grid_for(n), kBlockSize, 0, stream_of(ctx)>>>(n, alpha, a, b, out);
  DRGRAD_CUDA_CHECK_LAUNCH(multiply_kernel);
}

double dot(const Context& ctx, std::int64_t n, const float* x, const float* y) {
  if (n <= 0) return 0.0;
  const cudaStream_t stream = stream_of(ctx);
  // Scratch for the partial sums and the result, ordered on the op's stream.
  void* scratch = allocate_async((kDotBlocks + 1) * sizeof(double), stream);
  double* block_sums = static_cast<double*>(scratch);
  double* device_result = block_sums + kDotBlocks;
  double result = 0.0;
  try {
    dot_partials_kernel<<<kDotBlocks, kBlockSize, 0, stream>>>(n, x, y, block_sums);
    DRGRAD_CUDA_CHECK_LAUNCH(dot_partials_kernel);
    dot_total_kernel<<<1, kBlockSize, 0, stream>>>(block_sums, device_result);
    DRGRAD_CUDA_CHECK_LAUNCH(dot_total_kernel);
    DRGRAD_CUDA_CHECK(
        cudaMemcpyAsync(&result, device_result, sizeof(double), cudaMemcpyDeviceToHost, stream));
    DRGRAD_CUDA_CHECK(cudaStreamSynchronize(stream));
  } catch (...) {
    // Already failing: report the first error. release_async, not cudaFreeAsync: inside a CUDA
    // graph capture the scratch is the graph's memory (kernels/core/cuda_graph.h).
    try {
      release_async(scratch, stream);
    } catch (...) {
    }
    throw;
  }
  release_async(scratch, stream);
  return result;
}

}  // namespace drgrad::kernels::cuda
