// Vector helpers used between layers: strided row copies (concatenating feature blocks),
// y += alpha x, scaling, and dot products / squared norms for gradient statistics.
#pragma once

#include <cstdint>

#include "kernels/core/device.h"

namespace drgrad::kernels {

// dst[r * dst_stride + c] = src[r * src_stride + c] (accumulate: +=) for r < rows, c < cols.
template <typename T>
void copy_rows(const Context& ctx, const T* src, std::int64_t src_stride, T* dst,
               std::int64_t dst_stride, std::int64_t rows, std::int64_t cols, bool accumulate);
// y[i] += alpha * x[i]
template <typename T>
void axpy(const Context& ctx, std::int64_t n, T alpha, const T* x, T* y);
// y[i] += T(*alpha) * x[i], with alpha read where the op runs (device memory on CUDA, host memory
// on the CPU), so that a scalar computed on the device (DRGrad's mixing weights) scales a vector
// without a trip to the host. The arithmetic of axpy with alpha = T(*alpha), bit for bit.
template <typename T>
void axpy_scalar_in_memory(const Context& ctx, std::int64_t n, const double* alpha, const T* x,
                           T* y);
// out[i] = alpha * a[i] * b[i]  (out may alias a or b)
template <typename T>
void multiply(const Context& ctx, std::int64_t n, T alpha, const T* a, const T* b, T* out);
// Returns sum_i x[i] * y[i], computed in double and in a fixed order. Blocks on the device.
template <typename T>
double dot(const Context& ctx, std::int64_t n, const T* x, const T* y);

namespace cpu {
template <typename T>
void copy_rows(const T* src, std::int64_t src_stride, T* dst, std::int64_t dst_stride,
               std::int64_t rows, std::int64_t cols, bool accumulate);
template <typename T>
void axpy(std::int64_t n, T alpha, const T* x, T* y);
template <typename T>
void multiply(std::int64_t n, T alpha, const T* a, const T* b, T* out);
template <typename T>
double dot(std::int64_t n, const T* x, const T* y);
}  // namespace cpu

namespace cuda {
void copy_rows(const Context& ctx, const float* src, std::int64_t src_stride, float* dst,
               std::int64_t dst_stride, std::int64_t rows, std::int64_t cols, bool accumulate);
void axpy(const Context& ctx, std::int64_t n, float alpha, const float* x, float* y);
void axpy_scalar_in_memory(const Context& ctx, std::int64_t n, const double* alpha, const float* x,
                           float* y);
void multiply(const Context& ctx, std::int64_t n, float alpha, const float* a, const float* b,
              float* out);
double dot(const Context& ctx, std::int64_t n, const float* x, const float* y);
}  // namespace cuda

}  // namespace drgrad::kernels
