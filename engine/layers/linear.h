// Linear (fully connected) layer y = x W + b with an optional activation, and the multi-layer
// perceptron built from it. Forward keeps what backward needs; backward accumulates parameter
// gradients into the store and returns the input gradient.
#pragma once

#include <string>
#include <vector>

#include "engine/layers/layer_builder.h"
#include "kernels/activation/activation.h"
#include "kernels/dense/dense_layer.h"

namespace drgrad::engine {

template <typename T>
class Linear {
 public:
  // Registers "<name>/weight" [in, out] (Xavier uniform) and "<name>/bias" [out] (zeros).
  Linear(LayerBuilder& builder, const std::string& name, const std::string& group,
         std::int64_t in_features, std::int64_t out_features,
         kernels::Activation activation = kernels::Activation::kIdentity);

  // x: [batch, in] -> [batch, out].
  Tensor forward(const Tensor& x);
  // dy: [batch, out] -> dx [batch, in] (skipped, returning an empty tensor, when
  // need_input_gradient is false, e.g. for a first layer fed by data). When
  // upstream_is_pre_activation_gradient, dy is already the gradient with respect to this layer's
  // pre-activation and the bias gradient has been accumulated (by the next layer's
  // backward_into_relu_producer): only the weight and input gradients remain.
  Tensor backward(const Tensor& dy, bool need_input_gradient = true,
                  bool upstream_is_pre_activation_gradient = false);
  // Backward of the last forward pass when this layer's input was `producer`'s output and the
  // producer applies relu: accumulates this layer's parameter gradients and the producer's bias
  // gradient, and returns the gradient with respect to the producer's pre-activation
  // [batch, in], ready for producer.backward(..., true). On CUDA the producer's relu derivative
  // and bias gradient ride in the epilogue of this layer's input-gradient product.
  Tensor backward_into_relu_producer(const Tensor& dy, bool upstream_is_pre_activation_gradient,
                                     Linear& producer);
  // Backward of the last forward pass for K upstream gradients at once (one per task):
  // dy_stacked [K, batch, out] -> dx [K, batch, in]. Accumulates task k's parameter gradients
  // into row k of Parameter::task_gradients ([K, numel], prepared by zero_task_gradients);
  // Parameter::gradient is left untouched. One batched product for the K weight gradients and
  // one product with K * batch rows for the input gradients.
  Tensor backward_stacked(const Tensor& dy_stacked, bool need_input_gradient = true);
  // Backward of the last forward pass for an upstream that only task `task` of `tasks` has
  // (e.g. a task's own gate): dy [batch, out] -> dx [batch, in], the ordinary backward except
  // that the parameter gradients accumulate into row `task` of Parameter::task_gradients. The
  // other rows stay as they are (zero when this layer serves that task only).
  Tensor backward_task(std::int64_t task, std::int64_t tasks, const Tensor& dy,
                       bool need_input_gradient = true);

  std::int64_t in_features() const { return in_features_; }
  std::int64_t out_features() const { return out_features_; }
  kernels::Activation activation() const { return activation_; }
  Parameter& weight() { return *weight_; }
  Parameter& bias() { return *bias_; }

 private:
  // The stacked backward with the per-task gradient targets given: weight [K, in, out] and bias
  // [K, out] blocks, accumulated.
  Tensor stacked_backward_into(const Tensor& dy_stacked, T* weight_gradients, T* bias_gradients,
                               bool need_input_gradient, kernels::DenseEpilogue epilogue);
  // stacked_backward_into for all K tasks that also OVERWRITES weight_gram and bias_gram (K x K
  // float64 on the layer's device) with the tasks' Gram matrix of the final weight and bias
  // gradient blocks, reduced while they are written (kernels::task_gradients_with_gram), and
  // marks both parameters' task Gram current. Defined in linear_task_gram.cc.
  Tensor stacked_backward_with_gram(const Tensor& dy_stacked, T* weight_gradients,
                                    T* bias_gradients, double* weight_gram, double* bias_gram,
                                    bool need_input_gradient);
  // Throws std::invalid_argument unless dy_stacked is [K, batch of the last forward, out].
  void check_stacked_upstream(const Tensor& dy_stacked) const;
  kernels::DenseShape dense_shape(std::int64_t batch) const {
    return {batch, in_features_, out_features_};
  }

  kernels::Context ctx_;
  std::int64_t in_features_, out_features_;
  kernels::Activation activation_;
  Parameter* weight_;
  Parameter* bias_;
  // Kept by forward for backward: the input, the output and, for mish only, the pre-activation;
  // for relu, cuBLASLt's relu mask when the forward wrote one (CUDA), for the next layer's
  // backward_into_relu_producer.
  Tensor input_, output_, pre_activation_, relu_mask_;
  bool relu_mask_written_ = false;
};

template <typename T>
class Mlp {
 public:
  // Layers of the given widths; every layer applies `activation`, except the last when
  // activate_last is false (towers end in a plain logit).
  Mlp(LayerBuilder& builder, const std::string& name, const std::string& group,
      std::int64_t in_features, const std::vector<std::int64_t>& units,
      kernels::Activation activation, bool activate_last = true);

  Tensor forward(const Tensor& x);
  Tensor backward(const Tensor& dy, bool need_input_gradient = true);
  // dy_stacked [K, batch, out] -> [K, batch, in]; see Linear::backward_stacked.
  Tensor backward_stacked(const Tensor& dy_stacked, bool need_input_gradient = true);
  std::int64_t out_features() const;
  std::vector<Linear<T>>& layers() { return layers_; }

 private:
  std::vector<Linear<T>> layers_;
  std::int64_t in_features_;
};

}  // namespace drgrad::engine
