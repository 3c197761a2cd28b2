// CUDA twin of kernels/dense/gemm.h. Matrix products go to cuBLAS, which is column-major: a
// row-major C = op(A) op(B) is the column-major C^T = op(B)^T op(A)^T, so the operands swap and
// each stored matrix is read as its own transpose; the compute type follows ctx.matmul_precision.
// The bias helpers are small kernels.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "kernels/core/cublas_handle.h"
#include "kernels/core/cublaslt_handle.h"
#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/dense/gemm.h"

namespace drgrad::kernels::cuda {
namespace {

std::string describe(const GemmShape& s) {
  return "gemm(m=" + std::to_string(s.m) + ", n=" + std::to_string(s.n) +
         ", k=" + std::to_string(s.k) + ", lda=" + std::to_string(s.lda) +
         ", ldb=" + std::to_string(s.ldb) + ", ldc=" + std::to_string(s.ldc) +
         ", transpose_a=" + (s.transpose_a ? "true" : "false") +
         ", transpose_b=" + (s.transpose_b ? "true" : "false") + ")";
}

// Rejects shapes cuBLAS would refuse, with a message naming the shape instead of a bare status.
// Row-major storage: A is [m, k] (or [k, m] transposed), B is [k, n] (or [n, k]), C is [m, n].
void check_shape(const GemmShape& s) {
  if (s.m < 0 || s.n < 0 || s.k < 0) {
    throw std::invalid_argument(describe(s) + ": dimensions must be non-negative");
  }
  const std::int64_t a_columns = s.transpose_a ? s.m : s.k;
  const std::int64_t b_columns = s.transpose_b ? s.k : s.n;
  if (s.lda < std::max<std::int64_t>(1, a_columns) ||
      s.ldb < std::max<std::int64_t>(1, b_columns) || s.ldc < std::max<std::int64_t>(1, s.n)) {
    throw std::invalid_argument(describe(s) +
                                ": each leading dimension must be at least max(1, the number of "
                                "columns of the matrix as stored)");
  }
}

cublasOperation_t operation(bool transpose) {
  return transpose ? CUBLAS_OP_T : CUBLAS_OP_N;
}

// y[r * ld + c] += bias[c], one thread per element.
__global__ void add_bias_rows_kernel(float* y, std::int64_t ld, const float* bias,
                                     std::int64_t rows, std::int64_t cols) {
  const std::int64_t total = rows * cols;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < total;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t r = i / cols, c = i - r * cols;
    y[r * ld + c] += bias[c];
  }
}

// Column sums in a fixed order, so the bias gradient has the same bits on every run: a block
// covers kColumnsPerBlock adjacent columns (coalesced reads along a row); within it, row slice s
// sums rows s, s + kRowSlices, ... in order, then thread 0 of each column adds the slices 0, 1, ...
constexpr int kColumnsPerBlock = 32;
constexpr int kRowSlices = kBlockSize / kColumnsPerBlock;

__global__ void column_sums_kernel(const float* x, std::int64_t ld, std::int64_t rows,
                                   std::int64_t cols, float beta, float* sums) {
  __shared__ float slice_sums[kRowSlices][kColumnsPerBlock];
  const std::int64_t column = blockIdx.x * std::int64_t(kColumnsPerBlock) + threadIdx.x;
  float partial = 0.f;
  if (column < cols) {
    for (std::int64_t r = threadIdx.y; r < rows; r += kRowSlices) partial += x[r * ld + column];
  }
  slice_sums[threadIdx.y][threadIdx.x] = partial;
  __syncthreads();
  if (threadIdx.y == 0 && column < cols) {
    float total = beta * sums[column];
    for (int s = 0; s < kRowSlices; ++s) total += slice_sums[s][threadIdx.x];
    sums[column] = total;
  }
}

}  // namespace

void gemm(const Context& ctx, const GemmShape& shape, float alpha, const float* a, const float* b,
          float beta, float* c) {
  check_shape(shape);
  if (shape.m == 0 || shape.n == 0) return;
  cublasHandle_t handle = cublas_handle_for(ctx);
  DRGRAD_CUBLAS_CHECK(cublasGemmEx_64(
      handle, operation(shape.transpose_b), operation(shape.transpose_a), shape.n, shape.m, shape.k,
      &alpha, b, CUDA_R_32F, shape.ldb, a, CUDA_R_32F, shape.lda, &beta, c, CUDA_R_32F, shape.ldc,
      compute_type_for(ctx.matmul_precision), CUBLAS_GEMM_DEFAULT));
}

void gemm_strided_batched(const Context& ctx, const GemmShape& shape, const GemmBatch& batch,
                          float alpha, const float* a, const float* b, float beta, float* c) {
  check_shape(shape);
  if (batch.count < 0) {
    throw std::invalid_argument(describe(shape) + " batched: count " + std::to_string(batch.count) +
                                " is negative");
  }
  if (batch.count == 0 || shape.m == 0 || shape.n == 0) return;
  // The matrices of a batch run concurrently, so the outputs must not overlap (inputs may: a
  // stride of 0 reuses one A or B for the whole batch).
  const std::int64_t c_extent = (shape.m - 1) * shape.ldc + shape.n;
  if (batch.count > 1 && (batch.stride_c < 0 ? -batch.stride_c : batch.stride_c) < c_extent) {
    throw NotSupportedError(describe(shape) + " batched over " + std::to_string(batch.count) +
                            " matrices with stride_c " + std::to_string(batch.stride_c) +
                            ": the outputs overlap, which the CUDA backend does not support; "
                            "use stride_c >= (m - 1) * ldc + n or loop over gemm");
  }
  cublasHandle_t handle = cublas_handle_for(ctx);
  DRGRAD_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(
      handle, operation(shape.transpose_b), operation(shape.transpose_a), shape.n, shape.m, shape.k,
      &alpha, b, CUDA_R_32F, shape.ldb, batch.stride_b, a, CUDA_R_32F, shape.lda, batch.stride_a,
      &beta, c, CUDA_R_32F, shape.ldc, batch.stride_c, batch.count,
      compute_type_for(ctx.matmul_precision), CUBLAS_GEMM_DEFAULT));
}

void add_bias_rows(const Context& ctx, float* y, std::int64_t ld, const float* bias,
                   std::int64_t rows, std::int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  add_bias_rows_kernel<<<grid_for(rows * cols), kBlockSize, 0, stream_of(ctx)>>>(y, ld, bias, rows,
                                                                                 cols);
  DRGRAD_CUDA_CHECK_LAUNCH(add_bias_rows_kernel);
}

void column_sums(const Context& ctx, const float* x, std::int64_t ld, std::int64_t rows,
                 std::int64_t cols, float beta, float* sums) {
  if (cols <= 0) return;
  const std::int64_t blocks = (cols + kColumnsPerBlock - 1) / kColumnsPerBlock;
  if (blocks > 2147483647) {
    throw NotSupportedError("column_sums over " + std::to_string(cols) +
                            " columns: more than the CUDA grid can cover");
  }
  const dim3 block(kColumnsPerBlock, kRowSlices);
  column_sums_kernel<<<static_cast<unsigned>(blocks), block, 0, stream_of(ctx)>>>(x, ld, rows, cols,
                                                                                  beta, sums);
  DRGRAD_CUDA_CHECK_LAUNCH(column_sums_kernel);
}

}  // namespace drgrad::kernels::cuda
