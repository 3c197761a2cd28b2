// ExpertGroup: batched matrix products over experts, per-expert bias, shared activation.
#include "engine/layers/experts.h"

#include <stdexcept>

#include "engine/multitask/task_gradients.h"
#include "kernels/dense/gemm.h"
#include "kernels/vector/vector_ops.h"

namespace drgrad::engine {

template <typename T>
ExpertGroup<T>::ExpertGroup(LayerBuilder& builder, const std::string& name,
                            const std::string& group, std::int64_t num_experts,
                            std::int64_t in_features, const std::vector<std::int64_t>& units,
                            kernels::Activation activation)
    : ctx_(builder.ctx), num_experts_(num_experts), units_(units), activation_(activation) {
  if (units.empty()) throw std::invalid_argument("an expert needs at least one layer");
  std::int64_t width = in_features;
  for (std::size_t i = 0; i < units.size(); ++i) {
    const std::string prefix = name + "/layer" + std::to_string(i);
    ExpertLayer layer{width, units[i], nullptr, nullptr, {}, {}, {}};
    layer.weight = &builder.store.add<T>(
        prefix + "/weight", group, {num_experts, width, units[i]},
        builder.xavier_uniform<T>(num_experts * width * units[i], width, units[i]));
    layer.bias = &builder.store.add<T>(
        prefix + "/bias", group, {num_experts, units[i]},
        std::vector<T>(static_cast<std::size_t>(num_experts * units[i]), T(0)));
    layers_.push_back(layer);
    width = units[i];
  }
}

template <typename T>
Tensor ExpertGroup<T>::forward(const Tensor& x) {
  if (x.rank() != 2 || x.dim(1) != layers_.front().in) {
    throw std::invalid_argument("expert group expects [batch, " +
                                std::to_string(layers_.front().in) + "], got " +
                                shape_to_string(x.shape()));
  }
  const std::int64_t batch = x.dim(0);
  Tensor h = x;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    ExpertLayer& layer = layers_[i];
    layer.input = h;
    Tensor y(Shape{num_experts_, batch, layer.out}, dtype_of<T>(), x.device());
    const kernels::GemmShape shape{false,    false,    batch,     layer.out,
                                   layer.in, layer.in, layer.out, layer.out};
    // The first layer reads the same input for every expert (stride 0).
    const kernels::GemmBatch stacked{num_experts_, i == 0 ? 0 : batch * layer.in,
                                     layer.in * layer.out, batch * layer.out};
    kernels::gemm_strided_batched<T>(ctx_, shape, stacked, T(1), h.data<T>(),
                                     layer.weight->value.data<T>(), T(0), y.data<T>());
    for (std::int64_t e = 0; e < num_experts_; ++e) {
      kernels::add_bias_rows<T>(ctx_, y.data<T>() + e * batch * layer.out, layer.out,
                                layer.bias->value.data<T>() + e * layer.out, batch, layer.out);
    }
    layer.pre_activation = y;
    layer.output = Tensor(y.shape(), y.dtype(), y.device());
    kernels::activation_forward<T>(ctx_, activation_, y.data<T>(), layer.output.data<T>(),
                                   y.numel());
    h = layer.output;
  }
  return h;
}

template <typename T>
Tensor ExpertGroup<T>::backward(const Tensor& d_out, bool need_input_gradient) {
  Tensor d = d_out;
  for (std::size_t i = layers_.size(); i-- > 0;) {
    ExpertLayer& layer = layers_[i];
    const std::int64_t batch = layer.input.dim(i == 0 ? 0 : 1);
    Tensor d_pre(d.shape(), d.dtype(), d.device());
    kernels::activation_backward<T>(ctx_, activation_, layer.pre_activation.data<T>(),
                                    layer.output.data<T>(), d.data<T>(), d_pre.data<T>(),
                                    d.numel());
    const std::int64_t input_stride = i == 0 ? 0 : batch * layer.in;
    // dW_e += x_e^T d_pre_e
    const kernels::GemmShape weight_shape{true,  false,    layer.in,  layer.out,
                                          batch, layer.in, layer.out, layer.out};
    const kernels::GemmBatch weight_batch{num_experts_, input_stride, batch * layer.out,
                                          layer.in * layer.out};
    kernels::gemm_strided_batched<T>(ctx_, weight_shape, weight_batch, T(1), layer.input.data<T>(),
                                     d_pre.data<T>(), T(1), layer.weight->gradient.data<T>());
    for (std::int64_t e = 0; e < num_experts_; ++e) {
      kernels::column_sums<T>(ctx_, d_pre.data<T>() + e * batch * layer.out, layer.out, batch,
                              layer.out, T(1), layer.bias->gradient.data<T>() + e * layer.out);
    }
    if (i == 0 && !need_input_gradient) return Tensor();
    const kernels::GemmShape input_shape{false,     true,      batch,     layer.in,
                                         layer.out, layer.out, layer.out, layer.in};
    if (i > 0) {
      // dx_e = d_pre_e W_e^T, per expert.
      Tensor dx(Shape{num_experts_, batch, layer.in}, dtype_of<T>(), d.device());
      const kernels::GemmBatch input_batch{num_experts_, batch * layer.out, layer.in * layer.out,
                                           batch * layer.in};
      kernels::gemm_strided_batched<T>(ctx_, input_shape, input_batch, T(1), d_pre.data<T>(),
                                       layer.weight->value.data<T>(), T(0), dx.data<T>());
      d = dx;
    } else {
      // The shared input's gradient is the sum over experts: accumulate expert by expert.
      Tensor dx = Tensor::zeros(Shape{batch, layer.in}, dtype_of<T>(), d.device());
      for (std::int64_t e = 0; e < num_experts_; ++e) {
        kernels::gemm<T>(ctx_, input_shape, T(1), d_pre.data<T>() + e * batch * layer.out,
                         layer.weight->value.data<T>() + e * layer.in * layer.out, T(1),
                         dx.data<T>());
      }
      d = dx;
    }
  }
  return d;
}

template <typename T>
Tensor ExpertGroup<T>::backward_stacked(const Tensor& d_out_stacked, bool need_input_gradient) {
  const ExpertLayer& top = layers_.back();
  const std::int64_t batch = top.output.dim(1);
  if (d_out_stacked.rank() != 4 || d_out_stacked.dim(1) != num_experts_ ||
      d_out_stacked.dim(2) != batch || d_out_stacked.dim(3) != top.out) {
    throw std::invalid_argument("expert group stacked backward expects [tasks, " +
                                std::to_string(num_experts_) + ", " + std::to_string(batch) + ", " +
                                std::to_string(top.out) + "], got " +
                                shape_to_string(d_out_stacked.shape()));
  }
  const std::int64_t tasks = d_out_stacked.dim(0);
  Tensor d = d_out_stacked;
  for (std::size_t i = layers_.size(); i-- > 0;) {
    ExpertLayer& layer = layers_[i];
    Tensor& weight_gradients = dense_task_gradients(*layer.weight, tasks);
    Tensor& bias_gradients = dense_task_gradients(*layer.bias, tasks);
    const std::int64_t expert_block = batch * layer.out;          // one expert's d_pre
    const std::int64_t task_block = num_experts_ * expert_block;  // one task's d_pre
    const std::int64_t weight_block = layer.in * layer.out;       // one expert's weight
    // The activation is shared by the tasks: apply its derivative to each task's upstream.
    Tensor d_pre(d.shape(), d.dtype(), d.device());
    for (std::int64_t k = 0; k < tasks; ++k) {
      kernels::activation_backward<T>(ctx_, activation_, layer.pre_activation.data<T>(),
                                      layer.output.data<T>(), d.data<T>() + k * task_block,
                                      d_pre.data<T>() + k * task_block, task_block);
    }
    // dW[k, e] += x_e^T d_pre[k, e]. Task gradients are laid out [K, experts, in, out], so the
    // products for (k, e) follow each other with the same strides as d_pre [K, experts, ...].
    const kernels::GemmShape weight_shape{true,  false,    layer.in,  layer.out,
                                          batch, layer.in, layer.out, layer.out};
    if (i == 0) {
      // Every expert of every task reads the shared input: one product batch of K * experts.
      const kernels::GemmBatch weight_batch{tasks * num_experts_, 0, expert_block, weight_block};
      kernels::gemm_strided_batched<T>(ctx_, weight_shape, weight_batch, T(1),
                                       layer.input.data<T>(), d_pre.data<T>(), T(1),
                                       weight_gradients.data<T>());
    } else {
      // Expert e reads its own input: per expert, one batch over the K tasks (input stride 0).
      const kernels::GemmBatch weight_batch{tasks, 0, task_block, num_experts_ * weight_block};
      for (std::int64_t e = 0; e < num_experts_; ++e) {
        kernels::gemm_strided_batched<T>(ctx_, weight_shape, weight_batch, T(1),
                                         layer.input.data<T>() + e * batch * layer.in,
                                         d_pre.data<T>() + e * expert_block, T(1),
                                         weight_gradients.data<T>() + e * weight_block);
      }
    }
    for (std::int64_t k = 0; k < tasks; ++k) {
      for (std::int64_t e = 0; e < num_experts_; ++e) {
        kernels::column_sums<T>(ctx_, d_pre.data<T>() + k * task_block + e * expert_block,
                                layer.out, batch, layer.out, T(1),
                                bias_gradients.data<T>() + (k * num_experts_ + e) * layer.out);
      }
    }
    if (i == 0 && !need_input_gradient) return Tensor();
    const kernels::GemmShape input_shape{false,     true,      batch,     layer.in,
                                         layer.out, layer.out, layer.out, layer.in};
    if (i > 0) {
      // dx[k, e] = d_pre[k, e] W_e^T: per task, one batch over the experts.
      Tensor dx(Shape{tasks, num_experts_, batch, layer.in}, dtype_of<T>(), d.device());
      const kernels::GemmBatch input_batch{num_experts_, expert_block, weight_block,
                                           batch * layer.in};
      for (std::int64_t k = 0; k < tasks; ++k) {
        kernels::gemm_strided_batched<T>(ctx_, input_shape, input_batch, T(1),
                                         d_pre.data<T>() + k * task_block,
                                         layer.weight->value.data<T>(), T(0),
                                         dx.data<T>() + k * num_experts_ * batch * layer.in);
      }
      d = dx;
    } else {
      // dx[k] = sum_e d_pre[k, e] W_e^T: per expert, one batch over the tasks (weight stride 0)
      // accumulating into the shared input's gradient.
      Tensor dx = Tensor::zeros(Shape{tasks, batch, layer.in}, dtype_of<T>(), d.device());
      const kernels::GemmBatch input_batch{tasks, task_block, 0, batch * layer.in};
      for (std::int64_t e = 0; e < num_experts_; ++e) {
        kernels::gemm_strided_batched<T>(
            ctx_, input_shape, input_batch, T(1), d_pre.data<T>() + e * expert_block,
            layer.weight->value.data<T>() + e * weight_block, T(1), dx.data<T>());
      }
      d = dx;
    }
  }
  return d;
}

template class ExpertGroup<float>;
template class ExpertGroup<double>;

}  // namespace drgrad::engine
