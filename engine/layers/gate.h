// Softmax gate of a mixture of experts: probabilities = softmax(x W + b) over the experts it
// selects, and the gated combination of those experts' outputs.
#pragma once

#include <string>
#include <vector>

#include "engine/layers/linear.h"
#include "kernels/gate/gate.h"

namespace drgrad::engine {

template <typename T>
class SoftmaxGate {
 public:
  // Mixes the experts `selected` (indices into the level's expert-major output), reading an input
  // of `in_features`.
  SoftmaxGate(LayerBuilder& builder, const std::string& name, const std::string& group,
              std::int64_t in_features, const std::vector<int>& selected);

  // x: [batch, in]; experts: [all experts, batch, dim] -> [batch, dim].
  Tensor forward(const Tensor& x, const Tensor& experts);
  // d_out: [batch, dim]. Accumulates into d_experts ([all experts, batch, dim]) and returns the
  // gradient with respect to x.
  Tensor backward(const Tensor& d_out, Tensor& d_experts, bool need_input_gradient = true);
  // Backward of the last forward pass for K upstream gradients at once (one per task):
  // d_out_stacked [K, batch, dim]. Accumulates into d_experts_stacked ([K, all experts, batch,
  // dim]) and returns the stacked gradient with respect to x, [K, batch, in]. The logits layer's
  // per-task parameter gradients go to Parameter::task_gradients (see Linear::backward_stacked).
  Tensor backward_stacked(const Tensor& d_out_stacked, Tensor& d_experts_stacked,
                          bool need_input_gradient = true);
  // Backward for an upstream that only task `task` of `tasks` has (a task's own gate in MMoE or at
  // the top PLE level): the ordinary backward (d_out [batch, dim], accumulating into d_experts
  // [all experts, batch, dim], which should be that task's slice of the stacked expert gradient,
  // d_experts_stacked.narrow_first(task, 1).reshaped(...)), except that the logits layer's
  // parameter gradients accumulate into row `task` of Parameter::task_gradients. Returns
  // dx [batch, in], task `task`'s gradient of the gate input.
  Tensor backward_task(std::int64_t task, std::int64_t tasks, const Tensor& d_out,
                       Tensor& d_experts, bool need_input_gradient = true);

  const Tensor& probabilities() const { return probabilities_; }

 private:
  kernels::Context ctx_;
  kernels::ExpertSelection selection_;
  Linear<T> logits_;
  Tensor experts_, probabilities_;
};

}  // namespace drgrad::engine
