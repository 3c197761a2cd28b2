// Element-wise activations (identity, relu, mish, sigmoid) and their backward passes.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/core/device.h"

namespace drgrad::kernels {

enum class Activation { kIdentity, kRelu, kMish, kSigmoid };

// "identity" | "none", "relu", "mish", "sigmoid"; throws std::invalid_argument otherwise.
Activation parse_activation(const std::string& name);
const char* activation_name(Activation activation);

// y[i] = f(x[i]) for i < n. x and y may alias.
template <typename T>
void activation_forward(const Context& ctx, Activation f, const T* x, T* y, std::int64_t n);

// dx[i] = dy[i] * f'(x[i]), given the forward input x and output y (each activation uses the
// cheaper of the two). dx may alias dy.
template <typename T>
void activation_backward(const Context& ctx, Activation f, const T* x, const T* y, const T* dy,
                         T* dx, std::int64_t n);

namespace cpu {
template <typename T>
void activation_forward(Activation f, const T* x, T* y, std::int64_t n);
template <typename T>
void activation_backward(Activation f, const T* x, const T* y, const T* dy, T* dx, std::int64_t n);
}  // namespace cpu

namespace cuda {
void activation_forward(const Context& ctx, Activation f, const float* x, float* y, std::int64_t n);
void activation_backward(const Context& ctx, Activation f, const float* x, const float* y,
                         const float* dy, float* dx, std::int64_t n);
}  // namespace cuda

}  // namespace drgrad::kernels
