// Per-element arithmetic of the dense layer's activations, shared by the CPU twin and the CUDA
// kernels (inline __host__ __device__), so the CPU tests exercise the very same formulas.
#pragma once

#include <cmath>

#include "kernels/activation/activation.h"

#if defined(__CUDACC__)
#define DRGRAD_HOST_DEVICE __host__ __device__
#else
#define DRGRAD_HOST_DEVICE
#endif

namespace drgrad::kernels::dense_math {

// log(1 + e^z); beyond z = 20 it equals z to within float and double rounding of the result's
// use (tanh(20) is 1 in both), and computing e^z there could overflow.
template <typename T>
DRGRAD_HOST_DEVICE inline T softplus(T z) {
  using std::exp;
  using std::log1p;
  return z > T(20) ? z : log1p(exp(z));
}

// 1 / (1 + e^-z), evaluated on the side where the exponential cannot overflow.
template <typename T>
DRGRAD_HOST_DEVICE inline T sigmoid(T z) {
  using std::exp;
  if (z >= T(0)) return T(1) / (T(1) + exp(-z));
  const T e = exp(z);
  return e / (T(1) + e);
}

// mish(z) = z tanh(softplus(z)).
template <typename T>
DRGRAD_HOST_DEVICE inline T mish(T z) {
  using std::tanh;
  return z * tanh(softplus(z));
}

// mish'(z) = tanh(sp) + z (1 - tanh(sp)^2) sigmoid(z), sp = softplus(z). Stable for large |z|:
// z -> +inf gives t -> 1 and a vanishing second term; z -> -inf gives t ~ e^z and sigmoid ~ e^z,
// so both terms go to 0 without overflow.
template <typename T>
DRGRAD_HOST_DEVICE inline T mish_derivative(T z) {
  using std::tanh;
  const T t = tanh(softplus(z));
  return t + z * (T(1) - t * t) * sigmoid(z);
}

// f(z) for the activations of kernels/activation.
template <typename T>
DRGRAD_HOST_DEVICE inline T activation_value(Activation f, T z) {
  switch (f) {
    case Activation::kIdentity:
      return z;
    case Activation::kRelu:
      return z < T(0) ? T(0) : z;  // NaN passes, as in kernels/activation
    case Activation::kMish:
      return mish(z);
    case Activation::kSigmoid:
      return sigmoid(z);
  }
  return z;
}

// f'(z) from whichever of the pre-activation z and the output y = f(z) the activation needs:
// relu and sigmoid read y only (relu's y > 0 exactly where z > 0), mish reads z only.
template <typename T>
DRGRAD_HOST_DEVICE inline T activation_derivative(Activation f, T z, T y) {
  switch (f) {
    case Activation::kIdentity:
      return T(1);
    case Activation::kRelu:
      return y > T(0) ? T(1) : T(0);
    case Activation::kMish:
      return mish_derivative(z);
    case Activation::kSigmoid:
      return y * (T(1) - y);
  }
  return T(1);
}

// The upstream gradient dy carried through f: dy f'(z). Relu selects instead of multiplying, so
// that a non-finite upstream where the unit is off gives 0, as in kernels/activation.
template <typename T>
DRGRAD_HOST_DEVICE inline T activation_backward_value(Activation f, T z, T y, T dy) {
  if (f == Activation::kRelu) return y > T(0) ? dy : T(0);
  return dy * activation_derivative(f, z, y);
}

}  // namespace drgrad::kernels::dense_math
