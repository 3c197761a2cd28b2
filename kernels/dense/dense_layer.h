// The fused dense layer: y = act(x W + b) forward, and its backward (input, weight and bias
// gradients) for one or several stacked upstream gradients. CPU: CBLAS products plus loops;
// CUDA: cuBLASLt with fused epilogues, and fused bias+activation kernels where cuBLASLt has none.
#pragma once

#include <cstdint>

#include "kernels/activation/activation.h"
#include "kernels/core/device.h"

namespace drgrad::kernels {

// What follows the product x W. kNone: y = x W (no bias). The others add the bias b [out] and
// apply an activation.
enum class DenseEpilogue { kNone, kBias, kBiasRelu, kBiasMish, kBiasSigmoid };

const char* dense_epilogue_name(DenseEpilogue epilogue);
// The epilogue of a layer with a bias and activation f (kIdentity -> kBias).
DenseEpilogue dense_epilogue_with_bias(Activation f);
Activation activation_of(DenseEpilogue epilogue);
inline bool has_bias(DenseEpilogue epilogue) {
  return epilogue != DenseEpilogue::kNone;
}
// True when the backward needs the pre-activation z = x W + b kept by the forward (mish only:
// relu and sigmoid read their derivative off the output y).
inline bool needs_pre_activation(DenseEpilogue epilogue) {
  return epilogue == DenseEpilogue::kBiasMish;
}
// True when the backward writes the gradient with respect to z into d_pre (every epilogue with
// an activation); without one, dz is dy itself and d_pre is not touched.
inline bool needs_pre_activation_gradient(DenseEpilogue epilogue) {
  return epilogue == DenseEpilogue::kBiasRelu || epilogue == DenseEpilogue::kBiasMish ||
         epilogue == DenseEpilogue::kBiasSigmoid;
}

// Row-major, packed: x [batch, in], weight [in, out], bias [out], y and z [batch, out].
struct DenseShape {
  std::int64_t batch = 0;
  std::int64_t in = 0;
  std::int64_t out = 0;
};

// cuBLASLt's relu bit-mask of a bias+relu forward: one bit per output element (set where
// z > 0), columns of round_up(out, 128) bits per sample. The forward writes it when it can
// (bias+relu through cuBLASLt on CUDA) and says so in `written`; the next layer's backward then
// applies relu' inside its dx product (dense_backward_into_relu_producer). The CPU twin never
// writes it. The caller owns `data`: at least dense_relu_mask_bytes(shape) bytes on the device
// of the op, 16-byte aligned.
struct ReluMask {
  void* data = nullptr;
  bool written = false;
};
std::int64_t dense_relu_mask_bytes(const DenseShape& shape);
// Whether a forward on ctx can write a relu mask at all (a CUDA build on a CUDA device): callers
// need not allocate one otherwise.
bool dense_relu_mask_possible(const Context& ctx);

// Forward: y = act(x W + b). pre_activation receives z = x W + b when
// needs_pre_activation(epilogue) (it must then be non-null and must not alias y); otherwise it
// is ignored and may be null. bias is ignored (may be null) for kNone. relu_mask (may be null)
// is considered for kBiasRelu only; see ReluMask. Throws std::invalid_argument for negative
// sizes, in or out of 0, or a missing required pointer.
template <typename T>
void dense_forward(const Context& ctx, const DenseShape& shape, DenseEpilogue epilogue, const T* x,
                   const T* weight, const T* bias, T* y, T* pre_activation,
                   ReluMask* relu_mask = nullptr);

// Backward of the forward above for `tasks` upstream gradients at once (tasks = 1: the plain
// backward). Shapes, with K = tasks:
//   dy, d_pre [K, batch, out]; dx [K, batch, in]; d_weight [K, in, out]; d_bias [K, out].
// x, weight, y and pre_activation are the forward's (shared by all K); pre_activation is read
// only when needs_pre_activation(epilogue). d_pre receives dz = dy * act'(z) when
// needs_pre_activation_gradient(epilogue) (non-null then; it may alias dy, which is then
// overwritten); otherwise it is ignored. dx is skipped when null. d_bias is ignored for kNone.
// accumulate: d_weight and d_bias get the new gradients added (beta = 1) instead of overwritten;
// dx is always overwritten.
template <typename T>
void dense_backward(const Context& ctx, const DenseShape& shape, DenseEpilogue epilogue,
                    std::int64_t tasks, const T* x, const T* weight, const T* y,
                    const T* pre_activation, const T* dy, T* d_pre, T* dx, T* d_weight, T* d_bias,
                    bool accumulate);

// The validation every twin runs first: throw std::invalid_argument naming the layer when a size
// is out of range or a buffer the epilogue requires is missing (see the contracts above).
void check_dense_forward(const DenseShape& shape, DenseEpilogue epilogue, const void* bias,
                         const void* pre_activation, const void* y);
void check_dense_backward(const DenseShape& shape, DenseEpilogue epilogue, std::int64_t tasks,
                          const void* pre_activation, const void* d_pre, const void* d_weight,
                          const void* d_bias);

// The backward of one upstream (tasks = 1) when this layer's input x is the output of a
// bias+relu layer P (the producer, x = relu(z_P)): as dense_backward, except that instead of dx
// it writes P's pre-activation gradient producer_d_pre = (dz W^T) [x > 0] ([batch, in]) and adds
// (accumulate) or writes P's bias gradient into producer_d_bias ([in]). P's backward then
// continues from producer_d_pre with epilogue kNone. producer_relu_mask is P's forward mask when
// it was written, else null: with it, cuBLASLt applies relu' and reduces P's bias gradient inside
// the dx product (CUBLASLT_EPILOGUE_DRELU_BGRAD); without it, a fused kernel does, from x.
template <typename T>
void dense_backward_into_relu_producer(const Context& ctx, const DenseShape& shape,
                                       DenseEpilogue epilogue, const T* x, const T* weight,
                                       const T* y, const T* pre_activation, const T* dy, T* d_pre,
                                       T* d_weight, T* d_bias, bool accumulate,
                                       const void* producer_relu_mask, T* producer_d_pre,
                                       T* producer_d_bias);

namespace cpu {
template <typename T>
void dense_forward(const DenseShape& shape, DenseEpilogue epilogue, const T* x, const T* weight,
                   const T* bias, T* y, T* pre_activation, ReluMask* relu_mask = nullptr);
template <typename T>
void dense_backward(const DenseShape& shape, DenseEpilogue epilogue, std::int64_t tasks, const T* x,
                    const T* weight, const T* y, const T* pre_activation, const T* dy, T* d_pre,
                    T* dx, T* d_weight, T* d_bias, bool accumulate);
template <typename T>
void dense_backward_into_relu_producer(const DenseShape& shape, DenseEpilogue epilogue, const T* x,
                                       const T* weight, const T* y, const T* pre_activation,
                                       const T* dy, T* d_pre, T* d_weight, T* d_bias,
                                       bool accumulate, const void* producer_relu_mask,
                                       T* producer_d_pre, T* producer_d_bias);
}  // namespace cpu

namespace cuda {
// How the CUDA twin computes the layer. kLtEpilogue: cuBLASLt with the epilogue fused into the
// product where cuBLASLt has one (bias, bias+relu forward; bias gradient of a single upstream),
// falling back to kGemmThenKernel for any product whose epilogue cuBLASLt's heuristic rejects.
// kGemmThenKernel: a plain cuBLAS product, then drgrad's fused bias+activation kernel (forward)
// or activation-gradient + bias-gradient kernel (backward). Mish and sigmoid always take the
// product-then-kernel route (cuBLASLt has no such epilogue).
enum class DenseImplementation { kLtEpilogue, kGemmThenKernel };
// The implementation the dispatching functions use. See docs/gpu.md for how it was chosen.
inline constexpr DenseImplementation kDefaultDenseImplementation = DenseImplementation::kLtEpilogue;

void dense_forward(const Context& ctx, const DenseShape& shape, DenseEpilogue epilogue,
                   const float* x, const float* weight, const float* bias, float* y,
                   float* pre_activation, ReluMask* relu_mask = nullptr,
                   DenseImplementation implementation = kDefaultDenseImplementation);
void dense_backward(const Context& ctx, const DenseShape& shape, DenseEpilogue epilogue,
                    std::int64_t tasks, const float* x, const float* weight, const float* y,
                    const float* pre_activation, const float* dy, float* d_pre, float* dx,
                    float* d_weight, float* d_bias, bool accumulate,
                    DenseImplementation implementation = kDefaultDenseImplementation);
void dense_backward_into_relu_producer(
    const Context& ctx, const DenseShape& shape, DenseEpilogue epilogue, const float* x,
    const float* weight, const float* y, const float* pre_activation, const float* dy, float* d_pre,
    float* d_weight, float* d_bias, bool accumulate, const void* producer_relu_mask,
    float* producer_d_pre, float* producer_d_bias,
    DenseImplementation implementation = kDefaultDenseImplementation);

// Whether cuBLASLt's heuristic offers an algorithm for the forward product of `shape` with the
// epilogue fused (bias or bias+relu) at ctx's precision, for the alignment of the given
// pointers. false for epilogues cuBLASLt lacks (mish, sigmoid). For benchmarks and tests.
bool dense_forward_epilogue_fused(const Context& ctx, const DenseShape& shape,
                                  DenseEpilogue epilogue, const float* x, const float* weight,
                                  const float* bias, float* y);
}  // namespace cuda

}  // namespace drgrad::kernels
