// CPU twin of the fused dense layer (CBLAS products, then bias and activation in one loop over
// the output) and the dispatch to CUDA. The per-element arithmetic is kernels/dense/dense_math.h,
// shared with the CUDA kernels.
#include "kernels/dense/dense_layer.h"

#include <stdexcept>
#include <string>

#include "kernels/core/dispatch.h"
#include "kernels/dense/dense_math.h"
#include "kernels/dense/gemm.h"

namespace drgrad::kernels {

const char* dense_epilogue_name(DenseEpilogue epilogue) {
  switch (epilogue) {
    case DenseEpilogue::kNone:
      return "none";
    case DenseEpilogue::kBias:
      return "bias";
    case DenseEpilogue::kBiasRelu:
      return "bias+relu";
    case DenseEpilogue::kBiasMish:
      return "bias+mish";
    case DenseEpilogue::kBiasSigmoid:
      return "bias+sigmoid";
  }
  return "?";
}

DenseEpilogue dense_epilogue_with_bias(Activation f) {
  switch (f) {
    case Activation::kIdentity:
      return DenseEpilogue::kBias;
    case Activation::kRelu:
      return DenseEpilogue::kBiasRelu;
    case Activation::kMish:
      return DenseEpilogue::kBiasMish;
    case Activation::kSigmoid:
      return DenseEpilogue::kBiasSigmoid;
  }
  return DenseEpilogue::kBias;
}

Activation activation_of(DenseEpilogue epilogue) {
  switch (epilogue) {
    case DenseEpilogue::kNone:
    case DenseEpilogue::kBias:
      return Activation::kIdentity;
    case DenseEpilogue::kBiasRelu:
      return Activation::kRelu;
    case DenseEpilogue::kBiasMish:
      return Activation::kMish;
    case DenseEpilogue::kBiasSigmoid:
      return Activation::kSigmoid;
  }
  return Activation::kIdentity;
}

namespace {

std::string describe(const DenseShape& shape, DenseEpilogue epilogue) {
  return std::string("dense layer (") + dense_epilogue_name(epilogue) +
         ", batch=" + std::to_string(shape.batch) + ", in=" + std::to_string(shape.in) +
         ", out=" + std::to_string(shape.out) + ")";
}

}  // namespace

void check_dense_forward(const DenseShape& shape, DenseEpilogue epilogue, const void* bias,
                         const void* pre_activation, const void* y) {
  if (shape.batch < 0 || shape.in < 1 || shape.out < 1) {
    throw std::invalid_argument(describe(shape, epilogue) +
                                ": batch must be >= 0 and in, out >= 1");
  }
  if (has_bias(epilogue) && bias == nullptr) {
    throw std::invalid_argument(describe(shape, epilogue) + ": the epilogue needs a bias");
  }
  if (needs_pre_activation(epilogue) && (pre_activation == nullptr || pre_activation == y)) {
    throw std::invalid_argument(describe(shape, epilogue) +
                                ": the backward needs the pre-activation; pass a buffer of "
                                "[batch, out] apart from y");
  }
}

void check_dense_backward(const DenseShape& shape, DenseEpilogue epilogue, std::int64_t tasks,
                          const void* pre_activation, const void* d_pre, const void* d_weight,
                          const void* d_bias) {
  if (shape.batch < 0 || shape.in < 1 || shape.out < 1 || tasks < 1) {
    throw std::invalid_argument(describe(shape, epilogue) + " backward over " +
                                std::to_string(tasks) +
                                " tasks: batch must be >= 0, in, out and tasks >= 1");
  }
  if (d_weight == nullptr || (has_bias(epilogue) && d_bias == nullptr)) {
    throw std::invalid_argument(describe(shape, epilogue) +
                                " backward: the weight (and bias) gradient buffers are required");
  }
  if (needs_pre_activation(epilogue) && pre_activation == nullptr) {
    throw std::invalid_argument(describe(shape, epilogue) +
                                " backward: the forward's pre-activation is required");
  }
  if (needs_pre_activation_gradient(epilogue) && d_pre == nullptr) {
    throw std::invalid_argument(describe(shape, epilogue) +
                                " backward: a [tasks, batch, out] buffer for d_pre is required");
  }
}

std::int64_t dense_relu_mask_bytes(const DenseShape& shape) {
  const std::int64_t column_bits = (shape.out + 127) / 128 * 128;
  return column_bits / 8 * shape.batch;
}

bool dense_relu_mask_possible(const Context& ctx) {
  return ctx.device.is_cuda() && built_with_cuda();
}

namespace {
void check_relu_producer(const DenseShape& shape, const void* producer_d_pre,
                         const void* producer_d_bias) {
  if (producer_d_pre == nullptr || producer_d_bias == nullptr) {
    throw std::invalid_argument("dense backward into a relu producer (batch=" +
                                std::to_string(shape.batch) + ", in=" + std::to_string(shape.in) +
                                "): the producer's d_pre [batch, in] and bias gradient [in] "
                                "buffers are required");
  }
}
}  // namespace

namespace cpu {

template <typename T>
void dense_forward(const DenseShape& shape, DenseEpilogue epilogue, const T* x, const T* weight,
                   const T* bias, T* y, T* pre_activation, ReluMask* relu_mask) {
  check_dense_forward(shape, epilogue, bias, pre_activation, y);
  if (relu_mask != nullptr) relu_mask->written = false;  // the CPU twin keeps no mask
  if (shape.batch == 0) return;
  const GemmShape product{false,    false,    shape.batch, shape.out,
                          shape.in, shape.in, shape.out,   shape.out};
  T* z = needs_pre_activation(epilogue) ? pre_activation : y;
  gemm<T>(product, T(1), x, weight, T(0), z);
  if (epilogue == DenseEpilogue::kNone) return;
  const Activation f = activation_of(epilogue);
  for (std::int64_t r = 0; r < shape.batch; ++r) {
    T* z_row = z + r * shape.out;
    T* y_row = y + r * shape.out;
    for (std::int64_t c = 0; c < shape.out; ++c) {
      const T value = z_row[c] + bias[c];
      z_row[c] = value;
      y_row[c] = dense_math::activation_value(f, value);
    }
  }
}

template <typename T>
void dense_backward(const DenseShape& shape, DenseEpilogue epilogue, std::int64_t tasks, const T* x,
                    const T* weight, const T* y, const T* pre_activation, const T* dy, T* d_pre,
                    T* dx, T* d_weight, T* d_bias, bool accumulate) {
  check_dense_backward(shape, epilogue, tasks, pre_activation, d_pre, d_weight, d_bias);
  const std::int64_t block = shape.batch * shape.out;
  const T beta = accumulate ? T(1) : T(0);
  const T* dz = dy;
  if (needs_pre_activation_gradient(epilogue)) {
    const Activation f = activation_of(epilogue);
    for (std::int64_t k = 0; k < tasks; ++k) {
      for (std::int64_t i = 0; i < block; ++i) {
        const T z = pre_activation != nullptr ? pre_activation[i] : T(0);
        d_pre[k * block + i] = dense_math::activation_backward_value(f, z, y[i], dy[k * block + i]);
      }
    }
    dz = d_pre;
  }
  if (has_bias(epilogue)) {
    for (std::int64_t k = 0; k < tasks; ++k) {
      column_sums<T>(dz + k * block, shape.out, shape.batch, shape.out, beta,
                     d_bias + k * shape.out);
    }
  }
  // d_weight_k = x^T dz_k, x shared by every task.
  const GemmShape weight_product{true,        false,    shape.in,  shape.out,
                                 shape.batch, shape.in, shape.out, shape.out};
  const GemmBatch weight_batch{tasks, 0, block, shape.in * shape.out};
  gemm_strided_batched<T>(weight_product, weight_batch, T(1), x, dz, beta, d_weight);
  if (dx == nullptr) return;
  // dx for every task at once: tasks * batch rows times W^T.
  const GemmShape input_product{false,     true,      tasks * shape.batch, shape.in,
                                shape.out, shape.out, shape.out,           shape.in};
  gemm<T>(input_product, T(1), dz, weight, T(0), dx);
}

template <typename T>
void dense_backward_into_relu_producer(const DenseShape& shape, DenseEpilogue epilogue, const T* x,
                                       const T* weight, const T* y, const T* pre_activation,
                                       const T* dy, T* d_pre, T* d_weight, T* d_bias,
                                       bool accumulate, const void* producer_relu_mask,
                                       T* producer_d_pre, T* producer_d_bias) {
  check_relu_producer(shape, producer_d_pre, producer_d_bias);
  dense_backward<T>(shape, epilogue, 1, x, weight, y, pre_activation, dy, d_pre, producer_d_pre,
                    d_weight, d_bias, accumulate);
  // The producer's relu: its output x is positive exactly where its pre-activation is.
  const std::int64_t n = shape.batch * shape.in;
  for (std::int64_t i = 0; i < n; ++i) {
    producer_d_pre[i] =
        dense_math::activation_backward_value(Activation::kRelu, T(0), x[i], producer_d_pre[i]);
  }
  column_sums<T>(producer_d_pre, shape.in, shape.batch, shape.in, accumulate ? T(1) : T(0),
                 producer_d_bias);
}

#define DRGRAD_INSTANTIATE_CPU_DENSE(T)                                                          \
  template void dense_forward<T>(const DenseShape&, DenseEpilogue, const T*, const T*, const T*, \
                                 T*, T*, ReluMask*);                                             \
  template void dense_backward_into_relu_producer<T>(const DenseShape&, DenseEpilogue, const T*, \
                                                     const T*, const T*, const T*, const T*, T*, \
                                                     T*, T*, bool, const void*, T*, T*);         \
  template void dense_backward<T>(const DenseShape&, DenseEpilogue, std::int64_t, const T*,      \
                                  const T*, const T*, const T*, const T*, T*, T*, T*, T*, bool);
DRGRAD_INSTANTIATE_CPU_DENSE(float)
DRGRAD_INSTANTIATE_CPU_DENSE(double)
#undef DRGRAD_INSTANTIATE_CPU_DENSE

}  // namespace cpu

template <typename T>
void dense_forward(const Context& ctx, const DenseShape& shape, DenseEpilogue epilogue, const T* x,
                   const T* weight, const T* bias, T* y, T* pre_activation, ReluMask* relu_mask) {
  DRGRAD_DISPATCH(T, ctx, dense_forward, shape, epilogue, x, weight, bias, y, pre_activation,
                  relu_mask);
}

template <typename T>
void dense_backward_into_relu_producer(const Context& ctx, const DenseShape& shape,
                                       DenseEpilogue epilogue, const T* x, const T* weight,
                                       const T* y, const T* pre_activation, const T* dy, T* d_pre,
                                       T* d_weight, T* d_bias, bool accumulate,
                                       const void* producer_relu_mask, T* producer_d_pre,
                                       T* producer_d_bias) {
  DRGRAD_DISPATCH(T, ctx, dense_backward_into_relu_producer, shape, epilogue, x, weight, y,
                  pre_activation, dy, d_pre, d_weight, d_bias, accumulate, producer_relu_mask,
                  producer_d_pre, producer_d_bias);
}

template <typename T>
void dense_backward(const Context& ctx, const DenseShape& shape, DenseEpilogue epilogue,
                    std::int64_t tasks, const T* x, const T* weight, const T* y,
                    const T* pre_activation, const T* dy, T* d_pre, T* dx, T* d_weight, T* d_bias,
                    bool accumulate) {
  DRGRAD_DISPATCH(T, ctx, dense_backward, shape, epilogue, tasks, x, weight, y, pre_activation, dy,
                  d_pre, dx, d_weight, d_bias, accumulate);
}

#define DRGRAD_INSTANTIATE_DENSE(T)                                                               \
  template void dense_forward<T>(const Context&, const DenseShape&, DenseEpilogue, const T*,      \
                                 const T*, const T*, T*, T*, ReluMask*);                          \
  template void dense_backward_into_relu_producer<T>(                                             \
      const Context&, const DenseShape&, DenseEpilogue, const T*, const T*, const T*, const T*,   \
      const T*, T*, T*, T*, bool, const void*, T*, T*);                                           \
  template void dense_backward<T>(const Context&, const DenseShape&, DenseEpilogue, std::int64_t, \
                                  const T*, const T*, const T*, const T*, const T*, T*, T*, T*,   \
                                  T*, bool);
DRGRAD_INSTANTIATE_DENSE(float)
DRGRAD_INSTANTIATE_DENSE(double)
#undef DRGRAD_INSTANTIATE_DENSE

}  // namespace drgrad::kernels
