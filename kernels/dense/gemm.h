// Matrix products (row-major) and the bias helpers of dense layers. CPU: OpenBLAS (CBLAS);
// CUDA: cuBLAS.
#pragma once

#include <cstdint>

#include "kernels/core/device.h"

namespace drgrad::kernels {

// Threads OpenBLAS may use for one CPU product (0: all cores). Small layers (recommendation
// towers and experts) run fastest single-threaded; busy-waiting BLAS threads also collapse when
// the machine is shared.
void set_cpu_blas_threads(int threads);
int cpu_blas_threads();

// Row-major GEMM: C[m, n] = alpha * op(A) * op(B) + beta * C, op(X) = X or X^T.
// lda/ldb/ldc are the row strides of A, B, C as stored.
struct GemmShape {
  bool transpose_a = false;
  bool transpose_b = false;
  std::int64_t m = 0, n = 0, k = 0;
  std::int64_t lda = 0, ldb = 0, ldc = 0;
};

// Strides between consecutive matrices of a batched GEMM (0 reuses the same matrix).
struct GemmBatch {
  std::int64_t count = 1;
  std::int64_t stride_a = 0, stride_b = 0, stride_c = 0;
};

template <typename T>
void gemm(const Context& ctx, const GemmShape& shape, T alpha, const T* a, const T* b, T beta,
          T* c);

template <typename T>
void gemm_strided_batched(const Context& ctx, const GemmShape& shape, const GemmBatch& batch,
                          T alpha, const T* a, const T* b, T beta, T* c);

// y[r, c] += bias[c] for a [rows, cols] matrix with row stride ld.
template <typename T>
void add_bias_rows(const Context& ctx, T* y, std::int64_t ld, const T* bias, std::int64_t rows,
                   std::int64_t cols);

// sums[c] = beta * sums[c] + sum_r x[r, c]  (the bias gradient of a dense layer).
template <typename T>
void column_sums(const Context& ctx, const T* x, std::int64_t ld, std::int64_t rows,
                 std::int64_t cols, T beta, T* sums);

namespace cpu {
template <typename T>
void gemm(const GemmShape& shape, T alpha, const T* a, const T* b, T beta, T* c);
template <typename T>
void gemm_strided_batched(const GemmShape& shape, const GemmBatch& batch, T alpha, const T* a,
                          const T* b, T beta, T* c);
template <typename T>
void add_bias_rows(T* y, std::int64_t ld, const T* bias, std::int64_t rows, std::int64_t cols);
template <typename T>
void column_sums(const T* x, std::int64_t ld, std::int64_t rows, std::int64_t cols, T beta,
                 T* sums);
}  // namespace cpu

namespace cuda {
void gemm(const Context& ctx, const GemmShape& shape, float alpha, const float* a, const float* b,
          float beta, float* c);
void gemm_strided_batched(const Context& ctx, const GemmShape& shape, const GemmBatch& batch,
                          float alpha, const float* a, const float* b, float beta, float* c);
void add_bias_rows(const Context& ctx, float* y, std::int64_t ld, const float* bias,
                   std::int64_t rows, std::int64_t cols);
void column_sums(const Context& ctx, const float* x, std::int64_t ld, std::int64_t rows,
                 std::int64_t cols, float beta, float* sums);
}  // namespace cuda

}  // namespace drgrad::kernels
