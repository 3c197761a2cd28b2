// CPU twin of the matrix products (CBLAS from OpenBLAS) and the dispatch to CUDA.
#include "kernels/dense/gemm.h"

#include <cblas.h>

#include <type_traits>

#include "kernels/core/dispatch.h"

namespace drgrad::kernels {

void set_cpu_blas_threads(int threads) {
  openblas_set_num_threads(threads > 0 ? threads : openblas_get_num_procs());
}

int cpu_blas_threads() {
  return openblas_get_num_threads();
}

namespace cpu {

template <typename T>
void gemm(const GemmShape& s, T alpha, const T* a, const T* b, T beta, T* c) {
  if (s.m == 0 || s.n == 0) return;
  const auto ta = s.transpose_a ? CblasTrans : CblasNoTrans;
  const auto tb = s.transpose_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, s.m, s.n, s.k, alpha, a, s.lda, b, s.ldb, beta, c, s.ldc);
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, s.m, s.n, s.k, alpha, a, s.lda, b, s.ldb, beta, c, s.ldc);
  }
}

template <typename T>
void gemm_strided_batched(const GemmShape& shape, const GemmBatch& batch, T alpha, const T* a,
                          const T* b, T beta, T* c) {
  for (std::int64_t i = 0; i < batch.count; ++i) {
    gemm(shape, alpha, a + i * batch.stride_a, b + i * batch.stride_b, beta,
         c + i * batch.stride_c);
  }
}

template <typename T>
void add_bias_rows(T* y, std::int64_t ld, const T* bias, std::int64_t rows, std::int64_t cols) {
  for (std::int64_t r = 0; r < rows; ++r) {
    T* row = y + r * ld;
    for (std::int64_t c = 0; c < cols; ++c) row[c] += bias[c];
  }
}

template <typename T>
void column_sums(const T* x, std::int64_t ld, std::int64_t rows, std::int64_t cols, T beta,
                 T* sums) {
  for (std::int64_t c = 0; c < cols; ++c) sums[c] *= beta;
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * ld;
    for (std::int64_t c = 0; c < cols; ++c) sums[c] += row[c];
  }
}

#define DRGRAD_INSTANTIATE_CPU_GEMM(T)                                                             \
  template void gemm<T>(const GemmShape&, T, const T*, const T*, T, T*);                           \
  template void gemm_strided_batched<T>(const GemmShape&, const GemmBatch&, T, const T*, const T*, \
                                        T, T*);                                                    \
  template void add_bias_rows<T>(T*, std::int64_t, const T*, std::int64_t, std::int64_t);          \
  template void column_sums<T>(const T*, std::int64_t, std::int64_t, std::int64_t, T, T*);
DRGRAD_INSTANTIATE_CPU_GEMM(float)
DRGRAD_INSTANTIATE_CPU_GEMM(double)
#undef DRGRAD_INSTANTIATE_CPU_GEMM

}  // namespace cpu

template <typename T>
void gemm(const Context& ctx, const GemmShape& shape, T alpha, const T* a, const T* b, T beta,
          T* c) {
  DRGRAD_DISPATCH(T, ctx, gemm, shape, alpha, a, b, beta, c);
}

template <typename T>
void gemm_strided_batched(const Context& ctx, const GemmShape& shape, const GemmBatch& batch,
                          T alpha, const T* a, const T* b, T beta, T* c) {
  DRGRAD_DISPATCH(T, ctx, gemm_strided_batched, shape, batch, alpha, a, b, beta, c);
}

template <typename T>
void add_bias_rows(const Context& ctx, T* y, std::int64_t ld, const T* bias, std::int64_t rows,
                   std::int64_t cols) {
  DRGRAD_DISPATCH(T, ctx, add_bias_rows, y, ld, bias, rows, cols);
}

template <typename T>
void column_sums(const Context& ctx, const T* x, std::int64_t ld, std::int64_t rows,
                 std::int64_t cols, T beta, T* sums) {
  DRGRAD_DISPATCH(T, ctx, column_sums, x, ld, rows, cols, beta, sums);
}

#define DRGRAD_INSTANTIATE_GEMM(T)                                                                 \
  template void gemm<T>(const Context&, const GemmShape&, T, const T*, const T*, T, T*);           \
  template void gemm_strided_batched<T>(const Context&, const GemmShape&, const GemmBatch&, T,     \
                                        const T*, const T*, T, T*);                                \
  template void add_bias_rows<T>(const Context&, T*, std::int64_t, const T*, std::int64_t,         \
                                 std::int64_t);                                                    \
  template void column_sums<T>(const Context&, const T*, std::int64_t, std::int64_t, std::int64_t, \
                               T, T*);
DRGRAD_INSTANTIATE_GEMM(float)
DRGRAD_INSTANTIATE_GEMM(double)
#undef DRGRAD_INSTANTIATE_GEMM

}  // namespace drgrad::kernels
