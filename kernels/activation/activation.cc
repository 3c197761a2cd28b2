// CPU twin of the activations, and the dispatch between CPU and CUDA.
#include "kernels/activation/activation.h"

#include <cmath>
#include <stdexcept>

#include "kernels/core/dispatch.h"

namespace drgrad::kernels {

Activation parse_activation(const std::string& name) {
  if (name == "identity" || name == "none") return Activation::kIdentity;
  if (name == "relu") return Activation::kRelu;
  if (name == "mish") return Activation::kMish;
  if (name == "sigmoid") return Activation::kSigmoid;
  throw std::invalid_argument("unknown activation '" + name +
                              "': use identity, relu, mish or sigmoid");
}

const char* activation_name(Activation activation) {
  switch (activation) {
    case Activation::kIdentity:
      return "identity";
    case Activation::kRelu:
      return "relu";
    case Activation::kMish:
      return "mish";
    case Activation::kSigmoid:
      return "sigmoid";
  }
  return "?";
}

namespace cpu {
namespace {
// softplus(x) = log(1 + e^x) without overflow for large x.
template <typename T>
T softplus(T x) {
  return x > T(20) ? x : std::log1p(std::exp(x));
}
template <typename T>
T sigmoid(T x) {
  return x >= 0 ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x));
}
}  // namespace

template <typename T>
void activation_forward(Activation f, const T* x, T* y, std::int64_t n) {
  switch (f) {
    case Activation::kIdentity:
      for (std::int64_t i = 0; i < n; ++i) y[i] = x[i];
      break;
    case Activation::kRelu:
      for (std::int64_t i = 0; i < n; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];  // NaN passes
      break;
    case Activation::kMish:
      for (std::int64_t i = 0; i < n; ++i) y[i] = x[i] * std::tanh(softplus(x[i]));
      break;
    case Activation::kSigmoid:
      for (std::int64_t i = 0; i < n; ++i) y[i] = sigmoid(x[i]);
      break;
  }
}

template <typename T>
void activation_backward(Activation f, const T* x, const T* y, const T* dy, T* dx, std::int64_t n) {
  switch (f) {
    case Activation::kIdentity:
      for (std::int64_t i = 0; i < n; ++i) dx[i] = dy[i];
      break;
    case Activation::kRelu:
      // The load of dy is unconditional so that the compiler vectorises the select (a branch on
      // the sign of random pre-activations mispredicts half the time; docs/benchmarks.md).
      for (std::int64_t i = 0; i < n; ++i) {
        const T upstream = dy[i];
        dx[i] = x[i] > T(0) ? upstream : T(0);
      }
      break;
    case Activation::kMish:
      // d/dx [x tanh(sp(x))] = tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x)
      for (std::int64_t i = 0; i < n; ++i) {
        const T t = std::tanh(softplus(x[i]));
        dx[i] = dy[i] * (t + x[i] * (T(1) - t * t) * sigmoid(x[i]));
      }
      break;
    case Activation::kSigmoid:
      for (std::int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (T(1) - y[i]);
      break;
  }
}

template void activation_forward<float>(Activation, const float*, float*, std::int64_t);
template void activation_forward<double>(Activation, const double*, double*, std::int64_t);
template void activation_backward<float>(Activation, const float*, const float*, const float*,
                                         float*, std::int64_t);
template void activation_backward<double>(Activation, const double*, const double*, const double*,
                                          double*, std::int64_t);
}  // namespace cpu

template <typename T>
void activation_forward(const Context& ctx, Activation f, const T* x, T* y, std::int64_t n) {
  DRGRAD_DISPATCH(T, ctx, activation_forward, f, x, y, n);
}

template <typename T>
void activation_backward(const Context& ctx, Activation f, const T* x, const T* y, const T* dy,
                         T* dx, std::int64_t n) {
  DRGRAD_DISPATCH(T, ctx, activation_backward, f, x, y, dy, dx, n);
}

template void activation_forward<float>(const Context&, Activation, const float*, float*,
                                        std::int64_t);
template void activation_forward<double>(const Context&, Activation, const double*, double*,
                                         std::int64_t);
template void activation_backward<float>(const Context&, Activation, const float*, const float*,
                                         const float*, float*, std::int64_t);
template void activation_backward<double>(const Context&, Activation, const double*, const double*,
                                          const double*, double*, std::int64_t);

}  // namespace drgrad::kernels
