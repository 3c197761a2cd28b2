// PCGrad and CAGrad as training strategies: each task's gradient of the shared parameters
// (backbone and embeddings) comes from one stacked backward pass, and the surgery writes their
// combination as the gradient the optimizer applies. Towers keep their own task's gradient.
#pragma once

#include "engine/multitask/gradient_surgery.h"
#include "engine/multitask/strategy.h"

namespace drgrad::engine {

class SurgeryStrategy final : public MultiTaskStrategy {
 public:
  SurgeryStrategy(kernels::Context ctx, GradientSurgeryOptions options)
      : surgery_(ctx, options), method_(options.method) {}

  const char* name() const override {
    return method_ == SurgeryMethod::kPcgrad ? "pcgrad" : "cagrad";
  }
  bool needs_per_task_gradients() const override { return true; }
  bool needs_task_gram() const override { return true; }
  void after_backward(MultiTaskModel<float>& model, std::int64_t step) override {
    surgery_.apply(model.parameters(), {"backbone", "embeddings"});
  }
  std::string cuda_graph_obstacle() const override {
    return std::string(name()) +
           " reads the tasks' Gram matrix back to the host and solves for the combination there "
           "every step";
  }
  const GradientSurgery& surgery() const { return surgery_; }

 private:
  GradientSurgery surgery_;
  SurgeryMethod method_;
};

}  // namespace drgrad::engine
