// Backbones turn the feature input into one representation per task: Shared-Bottom (one MLP for
// all tasks), MMoE (shared experts, one softmax gate per task) and CGC/PLE (task and shared
// experts per level, as in Tang et al., RecSys 2020).
#pragma once

#include <memory>
#include <vector>

#include "engine/layers/experts.h"
#include "engine/layers/gate.h"
#include "engine/layers/linear.h"
#include "engine/models/model_spec.h"

namespace drgrad::engine {

// One representation per task and, when the model asks for it, the shared representation v_s
// (Shared-Bottom: the bottom's output; MMoE: an extra gate over all experts; PLE: the top
// level's shared gate). Every tensor is [batch, out_features()].
struct BackboneOutput {
  std::vector<Tensor> tasks;
  Tensor shared;  // undefined unless requested
};

template <typename T>
class Backbone {
 public:
  virtual ~Backbone() = default;
  virtual BackboneOutput forward(const Tensor& x) = 0;
  // The gradients of each task's representation (and of v_s, or an undefined tensor) -> the
  // gradient of x.
  virtual Tensor backward(const std::vector<Tensor>& d_task, const Tensor& d_shared) = 0;
  // Per-task backward for gradient surgery: d_task[k] is task k's upstream [batch, width]; the
  // shared parameters' per-task gradients go to Parameter::task_gradients (zeroed by the
  // caller) and the result is the stacked input gradient [tasks, batch, in]. One stacked pass,
  // not one pass per task (docs/multitask.md).
  virtual Tensor backward_stacked(const std::vector<Tensor>& d_task) = 0;
  virtual std::int64_t out_features() const = 0;
};

// Builds the backbone the spec names; parameters go to group "backbone".
template <typename T>
std::unique_ptr<Backbone<T>> make_backbone(LayerBuilder& builder, const ModelSpec& spec,
                                           std::int64_t in_features);

template <typename T>
class SharedBottom final : public Backbone<T> {
 public:
  SharedBottom(LayerBuilder& builder, const ModelSpec& spec, std::int64_t in_features);
  BackboneOutput forward(const Tensor& x) override;
  Tensor backward(const std::vector<Tensor>& d_task, const Tensor& d_shared) override;
  Tensor backward_stacked(const std::vector<Tensor>& d_task) override;
  std::int64_t out_features() const override { return bottom_.out_features(); }

 private:
  kernels::Context ctx_;
  std::size_t num_tasks_;
  bool with_shared_;
  Mlp<T> bottom_;
};

template <typename T>
class Mmoe final : public Backbone<T> {
 public:
  Mmoe(LayerBuilder& builder, const ModelSpec& spec, std::int64_t in_features);
  BackboneOutput forward(const Tensor& x) override;
  Tensor backward(const std::vector<Tensor>& d_task, const Tensor& d_shared) override;
  Tensor backward_stacked(const std::vector<Tensor>& d_task) override;
  std::int64_t out_features() const override { return experts_.out_features(); }

 private:
  kernels::Context ctx_;
  ExpertGroup<T> experts_;
  std::vector<SoftmaxGate<T>> gates_;
  std::vector<SoftmaxGate<T>> shared_gate_;  // one gate over all experts when v_s is needed
  Tensor expert_outputs_;
};

template <typename T>
class Ple final : public Backbone<T> {
 public:
  Ple(LayerBuilder& builder, const ModelSpec& spec, std::int64_t in_features);
  BackboneOutput forward(const Tensor& x) override;
  Tensor backward(const std::vector<Tensor>& d_task, const Tensor& d_shared) override;
  Tensor backward_stacked(const std::vector<Tensor>& d_task) override;
  std::int64_t out_features() const override { return width_; }

 private:
  // One extraction level: expert groups (one per task, then the shared one), a gate per task
  // over its own and the shared experts, and (below the top level) a shared gate over all.
  struct Level {
    std::vector<ExpertGroup<T>> groups;    // task groups in task order, then the shared group
    std::vector<std::size_t> group_input;  // task k reads input k; the shared group input K
    std::vector<std::int64_t> group_offsets;
    std::int64_t total_experts = 0;
    std::vector<SoftmaxGate<T>> task_gates;
    std::vector<SoftmaxGate<T>> shared_gate;  // at the top level only when v_s is needed
  };
  kernels::Context ctx_;
  std::size_t num_tasks_;
  std::int64_t width_;
  std::vector<Level> levels_;
};

}  // namespace drgrad::engine
