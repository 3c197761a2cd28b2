// Linear layer and MLP: the product, bias and activation (and their backward) through the fused
// dense op of kernels/dense, which picks the CPU or CUDA implementation.
#include "engine/layers/linear.h"

#include <stdexcept>

#include "engine/multitask/task_gradients.h"
#include "kernels/dense/dense_layer.h"

namespace drgrad::engine {

template <typename T>
Linear<T>::Linear(LayerBuilder& builder, const std::string& name, const std::string& group,
                  std::int64_t in_features, std::int64_t out_features,
                  kernels::Activation activation)
    : ctx_(builder.ctx),
      in_features_(in_features),
      out_features_(out_features),
      activation_(activation) {
  weight_ = &builder.store.add<T>(
      name + "/weight", group, {in_features, out_features},
      builder.xavier_uniform<T>(in_features * out_features, in_features, out_features));
  bias_ = &builder.store.add<T>(name + "/bias", group, {out_features},
                                std::vector<T>(static_cast<std::size_t>(out_features), T(0)));
}

template <typename T>
Tensor Linear<T>::forward(const Tensor& x) {
  if (x.rank() != 2 || x.dim(1) != in_features_) {
    throw std::invalid_argument("linear layer expects [batch, " + std::to_string(in_features_) +
                                "], got " + shape_to_string(x.shape()));
  }
  const std::int64_t batch = x.dim(0);
  const kernels::DenseEpilogue epilogue = kernels::dense_epilogue_with_bias(activation_);
  input_ = x;
  output_ = Tensor(Shape{batch, out_features_}, dtype_of<T>(), x.device());
  // Only mish's backward reads the pre-activation; relu and sigmoid read the output.
  pre_activation_ = kernels::needs_pre_activation(epilogue)
                        ? Tensor(output_.shape(), output_.dtype(), output_.device())
                        : Tensor();
  kernels::ReluMask mask;
  if (epilogue == kernels::DenseEpilogue::kBiasRelu && kernels::dense_relu_mask_possible(ctx_)) {
    const std::int64_t mask_bytes = kernels::dense_relu_mask_bytes(dense_shape(batch));
    relu_mask_ = Tensor(Shape{(mask_bytes + 3) / 4}, DType::kFloat32, x.device());
    mask.data = relu_mask_.data<float>();
  }
  kernels::dense_forward<T>(ctx_, dense_shape(batch), epilogue, x.data<T>(),
                            weight_->value.data<T>(), bias_->value.data<T>(), output_.data<T>(),
                            pre_activation_.defined() ? pre_activation_.data<T>() : nullptr,
                            mask.data != nullptr ? &mask : nullptr);
  relu_mask_written_ = mask.written;
  return output_;
}

template <typename T>
Tensor Linear<T>::backward(const Tensor& dy, bool need_input_gradient,
                           bool upstream_is_pre_activation_gradient) {
  if (dy.rank() != 2) {
    throw std::invalid_argument("linear backward expects [batch, " + std::to_string(out_features_) +
                                "], got " + shape_to_string(dy.shape()));
  }
  check_stacked_upstream(dy.reshaped({1, dy.dim(0), dy.dim(1)}));
  const kernels::DenseEpilogue epilogue = upstream_is_pre_activation_gradient
                                              ? kernels::DenseEpilogue::kNone
                                              : kernels::dense_epilogue_with_bias(activation_);
  const Tensor dx =
      stacked_backward_into(dy.reshaped({1, dy.dim(0), dy.dim(1)}), weight_->gradient.data<T>(),
                            bias_->gradient.data<T>(), need_input_gradient, epilogue);
  return dx.defined() ? dx.reshaped({dx.dim(1), dx.dim(2)}) : dx;
}

template <typename T>
Tensor Linear<T>::backward_into_relu_producer(const Tensor& dy,
                                              bool upstream_is_pre_activation_gradient,
                                              Linear& producer) {
  if (dy.rank() != 2) {
    throw std::invalid_argument("linear backward expects [batch, " + std::to_string(out_features_) +
                                "], got " + shape_to_string(dy.shape()));
  }
  check_stacked_upstream(dy.reshaped({1, dy.dim(0), dy.dim(1)}));
  const std::int64_t batch = input_.dim(0);
  if (producer.activation_ != kernels::Activation::kRelu ||
      producer.out_features_ != in_features_ || !producer.output_.defined() ||
      producer.output_.dim(0) != batch) {
    throw std::invalid_argument(
        "linear backward_into_relu_producer: the producer must be a relu layer of " +
        std::to_string(in_features_) + " outputs whose last forward fed this layer");
  }
  const kernels::DenseEpilogue epilogue = upstream_is_pre_activation_gradient
                                              ? kernels::DenseEpilogue::kNone
                                              : kernels::dense_epilogue_with_bias(activation_);
  Tensor d_pre;
  if (kernels::needs_pre_activation_gradient(epilogue)) {
    d_pre = Tensor(dy.shape(), dy.dtype(), dy.device());
  }
  Tensor producer_d_pre(Shape{batch, in_features_}, dtype_of<T>(), dy.device());
  kernels::dense_backward_into_relu_producer<T>(
      ctx_, dense_shape(batch), epilogue, input_.data<T>(), weight_->value.data<T>(),
      output_.data<T>(), pre_activation_.defined() ? pre_activation_.data<T>() : nullptr,
      dy.data<T>(), d_pre.defined() ? d_pre.data<T>() : nullptr, weight_->gradient.data<T>(),
      bias_->gradient.data<T>(), /*accumulate=*/true,
      producer.relu_mask_written_ ? producer.relu_mask_.data<float>() : nullptr,
      producer_d_pre.data<T>(), producer.bias_->gradient.data<T>());
  return producer_d_pre;
}

template <typename T>
void Linear<T>::check_stacked_upstream(const Tensor& dy_stacked) const {
  const std::int64_t batch = input_.dim(0);
  if (dy_stacked.rank() != 3 || dy_stacked.dim(1) != batch || dy_stacked.dim(2) != out_features_) {
    throw std::invalid_argument("linear stacked backward expects [tasks, " + std::to_string(batch) +
                                ", " + std::to_string(out_features_) + "], got " +
                                shape_to_string(dy_stacked.shape()));
  }
}

template <typename T>
Tensor Linear<T>::backward_stacked(const Tensor& dy_stacked, bool need_input_gradient) {
  check_stacked_upstream(dy_stacked);
  const std::int64_t tasks = dy_stacked.dim(0);
  T* weight_gradients = dense_task_gradients(*weight_, tasks).data<T>();
  T* bias_gradients = dense_task_gradients(*bias_, tasks).data<T>();
  double* weight_gram = task_gram_target(*weight_, tasks);
  double* bias_gram = task_gram_target(*bias_, tasks);
  if (weight_gram != nullptr && bias_gram != nullptr) {
    // The strategy wants the tasks' Gram matrix: reduce it while writing the gradients.
    return stacked_backward_with_gram(dy_stacked, weight_gradients, bias_gradients, weight_gram,
                                      bias_gram, need_input_gradient);
  }
  return stacked_backward_into(dy_stacked, weight_gradients, bias_gradients, need_input_gradient,
                               kernels::dense_epilogue_with_bias(activation_));
}

template <typename T>
Tensor Linear<T>::stacked_backward_into(const Tensor& dy_stacked, T* weight_gradients,
                                        T* bias_gradients, bool need_input_gradient,
                                        kernels::DenseEpilogue epilogue) {
  check_stacked_upstream(dy_stacked);
  const std::int64_t batch = input_.dim(0);
  const std::int64_t tasks = dy_stacked.dim(0);
  // The activation is the same for every task: its derivative multiplies each upstream.
  Tensor d_pre;
  if (kernels::needs_pre_activation_gradient(epilogue)) {
    d_pre = Tensor(dy_stacked.shape(), dy_stacked.dtype(), dy_stacked.device());
  }
  Tensor dx;
  if (need_input_gradient)
    dx = Tensor(Shape{tasks, batch, in_features_}, dtype_of<T>(), dy_stacked.device());
  kernels::dense_backward<T>(
      ctx_, dense_shape(batch), epilogue, tasks, input_.data<T>(), weight_->value.data<T>(),
      output_.data<T>(), pre_activation_.defined() ? pre_activation_.data<T>() : nullptr,
      dy_stacked.data<T>(), d_pre.defined() ? d_pre.data<T>() : nullptr,
      dx.defined() ? dx.data<T>() : nullptr, weight_gradients, bias_gradients,
      /*accumulate=*/true);
  return dx;
}

template <typename T>
Tensor Linear<T>::backward_task(std::int64_t task, std::int64_t tasks, const Tensor& dy,
                                bool need_input_gradient) {
  if (task < 0 || task >= tasks) {
    throw std::invalid_argument("linear backward_task: task " + std::to_string(task) +
                                " outside [0, " + std::to_string(tasks) + ")");
  }
  if (dy.rank() != 2) {
    throw std::invalid_argument("linear backward_task expects [batch, " +
                                std::to_string(out_features_) + "], got " +
                                shape_to_string(dy.shape()));
  }
  check_stacked_upstream(dy.reshaped({1, dy.dim(0), dy.dim(1)}));
  // The stacked backward with one upstream, into row `task` of the [tasks, numel] buffers.
  T* weight_row = dense_task_gradients(*weight_, tasks).data<T>() + task * weight_->value.numel();
  T* bias_row = dense_task_gradients(*bias_, tasks).data<T>() + task * out_features_;
  const Tensor dx =
      stacked_backward_into(dy.reshaped({1, dy.dim(0), dy.dim(1)}), weight_row, bias_row,
                            need_input_gradient, kernels::dense_epilogue_with_bias(activation_));
  return dx.defined() ? dx.reshaped({dx.dim(1), dx.dim(2)}) : dx;
}

template <typename T>
Mlp<T>::Mlp(LayerBuilder& builder, const std::string& name, const std::string& group,
            std::int64_t in_features, const std::vector<std::int64_t>& units,
            kernels::Activation activation, bool activate_last)
    : in_features_(in_features) {
  std::int64_t width = in_features;
  layers_.reserve(units.size());
  for (std::size_t i = 0; i < units.size(); ++i) {
    const bool last = i + 1 == units.size();
    layers_.emplace_back(builder, name + "/layer" + std::to_string(i), group, width, units[i],
                         last && !activate_last ? kernels::Activation::kIdentity : activation);
    width = units[i];
  }
}

template <typename T>
Tensor Mlp<T>::forward(const Tensor& x) {
  Tensor h = x;
  for (auto& layer : layers_) h = layer.forward(h);
  return h;
}

template <typename T>
Tensor Mlp<T>::backward(const Tensor& dy, bool need_input_gradient) {
  // Behind a relu layer, a layer hands back the relu layer's pre-activation gradient (with its
  // bias gradient done), which on CUDA saves a pass over the gradient per relu layer.
  Tensor d = dy;
  bool d_is_pre_activation_gradient = false;
  for (std::size_t i = layers_.size(); i-- > 0;) {
    if (i > 0 && layers_[i - 1].activation() == kernels::Activation::kRelu) {
      d = layers_[i].backward_into_relu_producer(d, d_is_pre_activation_gradient, layers_[i - 1]);
      d_is_pre_activation_gradient = true;
    } else {
      d = layers_[i].backward(d, i > 0 || need_input_gradient, d_is_pre_activation_gradient);
      d_is_pre_activation_gradient = false;
    }
  }
  return d;
}

template <typename T>
Tensor Mlp<T>::backward_stacked(const Tensor& dy_stacked, bool need_input_gradient) {
  Tensor d = dy_stacked;
  for (std::size_t i = layers_.size(); i-- > 0;) {
    d = layers_[i].backward_stacked(d, i > 0 || need_input_gradient);
  }
  return d;
}

template <typename T>
std::int64_t Mlp<T>::out_features() const {
  return layers_.empty() ? in_features_ : layers_.back().out_features();
}

template class Linear<float>;
template class Linear<double>;
template class Mlp<float>;
template class Mlp<double>;

}  // namespace drgrad::engine
