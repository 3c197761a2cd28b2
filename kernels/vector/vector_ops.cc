// CPU twin of the vector helpers and the dispatch to CUDA.
#include "kernels/vector/vector_ops.h"

#include <type_traits>

#include "kernels/core/dispatch.h"

namespace drgrad::kernels {

namespace cpu {

template <typename T>
void copy_rows(const T* src, std::int64_t src_stride, T* dst, std::int64_t dst_stride,
               std::int64_t rows, std::int64_t cols, bool accumulate) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const T* from = src + r * src_stride;
    T* to = dst + r * dst_stride;
    if (accumulate) {
      for (std::int64_t c = 0; c < cols; ++c) to[c] += from[c];
    } else {
      for (std::int64_t c = 0; c < cols; ++c) to[c] = from[c];
    }
  }
}

template <typename T>
void axpy(std::int64_t n, T alpha, const T* x, T* y) {
  for (std::int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

template <typename T>
void multiply(std::int64_t n, T alpha, const T* a, const T* b, T* out) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = alpha * a[i] * b[i];
}

template <typename T>
double dot(std::int64_t n, const T* x, const T* y) {
  double total = 0;
  for (std::int64_t i = 0; i < n; ++i) total += static_cast<double>(x[i]) * y[i];
  return total;
}

#define DRGRAD_INSTANTIATE_CPU(T)                                                                  \
  template void copy_rows<T>(const T*, std::int64_t, T*, std::int64_t, std::int64_t, std::int64_t, \
                             bool);                                                                \
  template void axpy<T>(std::int64_t, T, const T*, T*);                                            \
  template void multiply<T>(std::int64_t, T, const T*, const T*, T*);                              \
  template double dot<T>(std::int64_t, const T*, const T*);
DRGRAD_INSTANTIATE_CPU(float)
DRGRAD_INSTANTIATE_CPU(double)
#undef DRGRAD_INSTANTIATE_CPU

}  // namespace cpu

template <typename T>
void copy_rows(const Context& ctx, const T* src, std::int64_t src_stride, T* dst,
               std::int64_t dst_stride, std::int64_t rows, std::int64_t cols, bool accumulate) {
  DRGRAD_DISPATCH(T, ctx, copy_rows, src, src_stride, dst, dst_stride, rows, cols, accumulate);
}

template <typename T>
void axpy(const Context& ctx, std::int64_t n, T alpha, const T* x, T* y) {
  DRGRAD_DISPATCH(T, ctx, axpy, n, alpha, x, y);
}

template <typename T>
void axpy_scalar_in_memory(const Context& ctx, std::int64_t n, const double* alpha, const T* x,
                           T* y) {
  if (ctx.device.is_cuda()) {
    if constexpr (std::is_same_v<T, float>) {
      DRGRAD_CUDA_TWIN(cuda::axpy_scalar_in_memory(ctx, n, alpha, x, y); return );
    } else {
      throw_double_on_cuda("axpy_scalar_in_memory");
    }
  }
  cpu::axpy(n, static_cast<T>(*alpha), x, y);
}

template <typename T>
void multiply(const Context& ctx, std::int64_t n, T alpha, const T* a, const T* b, T* out) {
  DRGRAD_DISPATCH(T, ctx, multiply, n, alpha, a, b, out);
}

template <typename T>
double dot(const Context& ctx, std::int64_t n, const T* x, const T* y) {
  if (ctx.device.is_cuda()) {
    if constexpr (std::is_same_v<T, float>) {
      DRGRAD_CUDA_TWIN(return cuda::dot(ctx, n, x, y));
    } else {
      throw_double_on_cuda("dot");
    }
  }
  return cpu::dot(n, x, y);
}

#define DRGRAD_INSTANTIATE(T)                                                                   \
  template void copy_rows<T>(const Context&, const T*, std::int64_t, T*, std::int64_t,          \
                             std::int64_t, std::int64_t, bool);                                 \
  template void axpy<T>(const Context&, std::int64_t, T, const T*, T*);                         \
  template void axpy_scalar_in_memory<T>(const Context&, std::int64_t, const double*, const T*, \
                                         T*);                                                   \
  template void multiply<T>(const Context&, std::int64_t, T, const T*, const T*, T*);           \
  template double dot<T>(const Context&, std::int64_t, const T*, const T*);
DRGRAD_INSTANTIATE(float)
DRGRAD_INSTANTIATE(double)
#undef DRGRAD_INSTANTIATE

}  // namespace drgrad::kernels
