// The per-sample arithmetic of the task losses, as inline functions compiled for both the host
// and the device, so that the CPU twin and the CUDA twin run the very same expressions (the CPU
// tests exercise the arithmetic the GPU runs; only the libm/CUDA math rounding differs).
#pragma once

#include <math.h>

#include <cmath>

#if !defined(DRGRAD_HOST_DEVICE)
#if defined(__CUDACC__)
#define DRGRAD_HOST_DEVICE __host__ __device__
#else
#define DRGRAD_HOST_DEVICE
#endif
#endif

namespace drgrad::kernels::loss_math {

// One sample of one task: its loss, dloss/dz before the gradient scale, and the prediction.
template <typename T>
struct SampleLoss {
  T loss;
  T gradient;
  T prediction;
};

DRGRAD_HOST_DEVICE inline float exponential(float x) {
  return expf(x);
}
DRGRAD_HOST_DEVICE inline double exponential(double x) {
  return exp(x);
}
DRGRAD_HOST_DEVICE inline float log_one_plus(float x) {
  return log1pf(x);
}
DRGRAD_HOST_DEVICE inline double log_one_plus(double x) {
  return log1p(x);
}
DRGRAD_HOST_DEVICE inline float absolute(float x) {
  return fabsf(x);
}
DRGRAD_HOST_DEVICE inline double absolute(double x) {
  return fabs(x);
}

template <typename T>
DRGRAD_HOST_DEVICE inline bool is_finite(T x) {
#if defined(__CUDA_ARCH__)
  return isfinite(x);
#else
  return std::isfinite(x);
#endif
}

// softplus(x) = log(1 + e^x), written as max(x, 0) + log1p(e^-|x|) so that e^ never overflows.
// (x < 0 ? 0 : x) is std::max(x, 0) spelled so that the device can run it; NaN stays NaN.
template <typename T>
DRGRAD_HOST_DEVICE inline T stable_softplus(T x) {
  return (x < T(0) ? T(0) : x) + log_one_plus(exponential(-absolute(x)));
}

// The logistic function, with e^ taken of a non-positive number only.
template <typename T>
DRGRAD_HOST_DEVICE inline T sigmoid(T x) {
  return x >= T(0) ? T(1) / (T(1) + exponential(-x)) : exponential(x) / (T(1) + exponential(x));
}

// Cross-entropy on the logit z with label y in [0, 1] and weight w on the positive term:
//   loss = w y softplus(-z) + (1 - y) softplus(z),  dloss/dz = (w y + 1 - y) s(z) - w y.
template <typename T>
DRGRAD_HOST_DEVICE inline SampleLoss<T> sigmoid_cross_entropy_sample(T z, T y, T weight) {
  const T weighted_label = weight * y;
  const T probability = sigmoid(z);
  // -log s(z) = softplus(-z), -log(1 - s(z)) = softplus(z).
  const T loss = weighted_label * stable_softplus(-z) + (T(1) - y) * stable_softplus(z);
  const T gradient = (weighted_label + T(1) - y) * probability - weighted_label;
  return {loss, gradient, probability};
}

// Squared error without the 1/2: loss = (z - y)^2, dloss/dz = 2 (z - y), prediction z.
template <typename T>
DRGRAD_HOST_DEVICE inline SampleLoss<T> squared_error_sample(T z, T y) {
  const T difference = z - y;
  return {difference * difference, T(2) * difference, z};
}

}  // namespace drgrad::kernels::loss_math
