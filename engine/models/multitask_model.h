// A complete multi-task model: feature input (dense block and embedding bags), a backbone, and
// one tower per task producing that task's logit. With split towers (DRGrad, Split-MMoE) the
// primary task has two towers of the same shape, T' on its own view and T'' on the shared
// representation v_s (optionally through a personalized gate), mixed as mu' T' + mu'' T''.
// Explicit forward and backward, no autodiff.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "engine/layers/personalized_gate.h"
#include "engine/models/backbone.h"
#include "engine/multitask/task_gradients.h"
#include "io/data/batch.h"

namespace drgrad::engine {

template <typename T>
class MultiTaskModel {
 public:
  // Parameters are created on ctx.device, initialised from `seed`.
  MultiTaskModel(const ModelSpec& spec, kernels::Context ctx, std::uint64_t seed);

  // Logits of every task, [batch, tasks] on the model's device.
  Tensor forward(const io::Batch& batch);
  // The same in two halves (FeatureInput::stage and forward): the host checks and uploads the
  // batch into `into`, whose buffers are reused where the shapes match; the device work reads
  // only what was staged, so that it can be captured in a CUDA graph.
  void stage(const io::Batch& batch, StagedInput* into) { input_->stage(batch, into); }
  Tensor forward(const StagedInput& staged);
  // d_logits: [batch, tasks]. Accumulates every parameter's gradient (call
  // parameters().zero_gradients() between steps).
  void backward(const Tensor& d_logits);

  // The backward pass for gradient surgery: towers as usual, then one stacked pass through the
  // shared part that leaves every task's gradient of the "backbone" and "embeddings" parameters
  // in Parameter::task_gradients (memory: tasks x shared parameters). Plain backbones only
  // (split towers throw NotSupportedError). With TaskGram::kDuringBackward the backbone's dense
  // parameters also get their K x K task Gram matrix (Parameter::task_gram) where their layer
  // can compute it on the way.
  void backward_per_task(const Tensor& d_logits, TaskGram gram = TaskGram::kNone);

  ParameterStore& parameters() { return store_; }
  const ParameterStore& parameters() const { return store_; }
  const ModelSpec& spec() const { return spec_; }
  const kernels::Context& context() const { return ctx_; }

  // Parameter groups of the towers: "tower/<task>" for ordinary towers; with split towers the
  // primary task's are "tower/<task>/own" (T') and "tower/<task>/shared" (T'').
  std::string tower_group(int task) const;
  std::string primary_own_group() const;
  std::string primary_shared_group() const;

  // Mixing weights of the split primary task's towers (mu' + mu'' = 1; 0.5 each at start). They
  // live in the model's device memory, where the forward and backward passes read them.
  // set_mixing uploads two host values; copy_mixing_from copies two adjacent doubles (mu', mu'')
  // that are already in device memory on the model's device (DRGrad's router state) on the
  // current stream, without a host synchronisation.
  void set_mixing(double mu_own, double mu_shared);
  void copy_mixing_from(const double* mu_own_then_shared);
  // Read back from the device (a synchronisation on CUDA; for tests, telemetry, checkpoints).
  double mu_own() const;
  double mu_shared() const;

 private:
  // Everything after the input layer, from the [batch, input width] input matrix.
  Tensor forward_input(const Tensor& x);

  ModelSpec spec_;
  kernels::Context ctx_;
  ParameterStore store_;
  Random init_random_;
  std::unique_ptr<FeatureInput<T>> input_;
  std::unique_ptr<Backbone<T>> backbone_;
  std::vector<Mlp<T>> towers_;                    // one per task (the primary's T' when split)
  std::unique_ptr<Mlp<T>> primary_shared_tower_;  // T''
  std::unique_ptr<PersonalizedGate<T>> personal_gate_;
  std::vector<std::int64_t> personal_columns_, personal_dims_;
  Tensor mixing_;  // [2] doubles on the model's device: mu', mu''.
  std::int64_t batch_ = 0;
  std::int64_t input_width_ = 0;

  bool tower_reads_shared(int task) const;
};

}  // namespace drgrad::engine
