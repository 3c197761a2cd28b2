// Multi-task strategies act between the backward pass and the optimizer step: they may rewrite
// gradients (DRGrad's router, gradient surgery) and adjust the model (DRGrad's mixing weights).
// The trainer calls them once per step and keeps their state in checkpoints.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "engine/models/multitask_model.h"
#include "engine/optim/optimizer.h"

namespace drgrad::engine {

class MultiTaskStrategy {
 public:
  virtual ~MultiTaskStrategy() = default;
  virtual const char* name() const = 0;
  // True when the strategy needs each task's gradient of the shared parameters: the trainer
  // then runs MultiTaskModel::backward_per_task instead of backward.
  virtual bool needs_per_task_gradients() const { return false; }
  // With needs_per_task_gradients: true when the strategy reads the tasks' Gram matrix of the
  // shared parameters, so that the stacked backward computes it on the way
  // (TaskGram::kDuringBackward in engine/multitask/task_gradients.h).
  virtual bool needs_task_gram() const { return false; }
  // After model.backward() of step `step` (1-based), before the optimizer's update.
  virtual void after_backward(MultiTaskModel<float>& model, std::int64_t step) = 0;
  // What the trainer calls after model.backward(): after_backward, then the optimizer's step. A
  // strategy that fuses its gradient rewrite with the update of the parameters it rewrites
  // (DRGrad: route and update the towers in one pass) overrides it; the result must be that of
  // after_backward followed by optimizer.step.
  virtual void after_backward_and_step(MultiTaskModel<float>& model, Optimizer<float>& optimizer,
                                       std::int64_t step) {
    after_backward(model, step);
    optimizer.step(model.parameters());
  }
  // After a training step's work has been issued, outside it (never inside a captured CUDA graph):
  // host work that reads device results, such as DRGrad's telemetry. `step` is the step issued.
  virtual void after_step(std::int64_t step) {}
  // Empty when the strategy's part of a step can be captured once in a CUDA graph and replayed
  // (it reads nothing back to the host and bakes no per-step host value into its launches);
  // otherwise the reason it cannot, for the error a user meets with training.cuda_graph = true.
  virtual std::string cuda_graph_obstacle() const {
    return std::string("the '") + name() + "' strategy has not been checked for CUDA graph capture";
  }
  // Drops cached device tables (segment tables of parameter arrays) so that the next step builds
  // them afresh: the trainer calls it before capturing a step, for the reason given at
  // Optimizer::rebuild_tables_next_step.
  virtual void rebuild_tables_next_step() {}
  // State that must survive a checkpoint ("strategy/..." tensors), and its restoration (which
  // may also set model state such as the mixing weights).
  virtual void save_state(std::map<std::string, Tensor>& tensors) const {}
  virtual void load_state(const std::map<std::string, Tensor>& tensors,
                          MultiTaskModel<float>& model) {}
};

}  // namespace drgrad::engine
