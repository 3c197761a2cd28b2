// A group of experts of identical shape computed together: every layer of all experts is one
// strided-batched matrix product. Output is expert-major, [experts, batch, width], which is the
// layout the gated combination reads.
#pragma once

#include <string>
#include <vector>

#include "engine/layers/layer_builder.h"
#include "kernels/activation/activation.h"

namespace drgrad::engine {

// One layer of an expert group: shapes, parameters and what forward keeps for backward.
struct ExpertLayer {
  std::int64_t in, out;
  Parameter* weight;
  Parameter* bias;
  Tensor input, pre_activation, output;
};

template <typename T>
class ExpertGroup {
 public:
  // Registers "<name>/layer<i>/weight" [experts, in, out] and ".../bias" [experts, out].
  ExpertGroup(LayerBuilder& builder, const std::string& name, const std::string& group,
              std::int64_t num_experts, std::int64_t in_features,
              const std::vector<std::int64_t>& units, kernels::Activation activation);

  // x: [batch, in], read by every expert -> [experts, batch, out].
  Tensor forward(const Tensor& x);
  // d_out: [experts, batch, out] -> dx [batch, in], summed over experts.
  Tensor backward(const Tensor& d_out, bool need_input_gradient = true);
  // Backward of the last forward pass for K upstream gradients at once (one per task):
  // d_out_stacked [K, experts, batch, out] -> dx [K, batch, in], summed over experts. Task k's
  // parameter gradients accumulate into row k of Parameter::task_gradients (prepared by
  // zero_task_gradients); Parameter::gradient is left untouched.
  Tensor backward_stacked(const Tensor& d_out_stacked, bool need_input_gradient = true);

  std::int64_t num_experts() const { return num_experts_; }
  std::int64_t in_features() const { return layers_.front().in; }
  std::int64_t out_features() const { return units_.back(); }

 private:
  kernels::Context ctx_;
  std::int64_t num_experts_;
  std::vector<std::int64_t> units_;
  kernels::Activation activation_;
  std::vector<ExpertLayer> layers_;
};

}  // namespace drgrad::engine
