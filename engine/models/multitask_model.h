// A complete multi-task model: feature input (dense block and embedding bags), a backbone, and
// one tower per task producing that task's logit. Explicit forward and backward, no autodiff.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/models/backbone.h"
#include "io/data/batch.h"

namespace drgrad::engine {

template <typename T>
class MultiTaskModel {
 public:
  // Parameters are created on ctx.device, initialised from `seed`.
  MultiTaskModel(const ModelSpec& spec, kernels::Context ctx, std::uint64_t seed);

  // Logits of every task, [batch, tasks] on the model's device.
  Tensor forward(const io::Batch& batch);
  // d_logits: [batch, tasks]. Accumulates every parameter's gradient (call
  // parameters().zero_gradients() between steps).
  void backward(const Tensor& d_logits);

  ParameterStore& parameters() { return store_; }
  const ParameterStore& parameters() const { return store_; }
  const ModelSpec& spec() const { return spec_; }
  const kernels::Context& context() const { return ctx_; }

 private:
  ModelSpec spec_;
  kernels::Context ctx_;
  ParameterStore store_;
  Random init_random_;
  std::unique_ptr<FeatureInput<T>> input_;
  std::unique_ptr<Backbone<T>> backbone_;
  std::vector<Mlp<T>> towers_;
  std::int64_t batch_ = 0;
};

}  // namespace drgrad::engine
