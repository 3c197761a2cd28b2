// DRGrad as a training strategy: the router on the split towers' gradients after every backward
// pass (Eq. 1-5), the updater of the mixing weights (Eq. 7), and per-step telemetry written as
// JSON lines that a plot can read directly. It runs the fused passes of
// kernels/multitask/drgrad_router.h: products, coefficients, route (and, in a training step,
// the towers' optimizer update) and updater, with the router's state kept on the model's device.
#pragma once

#include <array>
#include <fstream>
#include <string>
#include <vector>

#include "engine/multitask/drgrad_router.h"
#include "engine/multitask/strategy.h"
#include "kernels/multitask/drgrad_router.h"

namespace drgrad::engine {

struct DrgradSettings {
  RouterSettings router;
  double rho = 1.0;                  // updater decay; 1 is the paper
  std::int64_t telemetry_every = 1;  // 0: no telemetry
  std::string telemetry_path;        // JSON lines; empty: none
};

class DrgradStrategy final : public MultiTaskStrategy {
 public:
  // Checks that the model has split towers, that every routed tower has the same shape (throws
  // std::invalid_argument naming the towers that differ) and that there are at most
  // kernels::kRouterMaxAuxiliaryTowers auxiliary tasks (kernels::NotSupportedError).
  DrgradStrategy(const DrgradSettings& settings, const MultiTaskModel<float>& model);

  const char* name() const override { return "drgrad"; }
  // Routes the towers' gradients in place (g1' += gR1', g1'' += gR1'', and the auxiliary heads in
  // the symmetric_heads form) and updates the mixing weights; the optimizer then updates as usual.
  void after_backward(MultiTaskModel<float>& model, std::int64_t step) override;
  // The training step: the towers' routed gradients go straight into their optimizer update in
  // the same pass (the gradient arrays keep the unrouted values), the optimizer updates every
  // other parameter, then the mixing weights. Same arithmetic as after_backward + step.
  void after_backward_and_step(MultiTaskModel<float>& model, Optimizer<float>& optimizer,
                               std::int64_t step) override;
  // Telemetry (one JSON line every telemetry_every steps), which reads the router's state from the
  // device.
  void after_step(std::int64_t step) override;
  // Nothing: the router's passes read and write device memory only, and its per-step scalars
  // (the optimizer's rule) come from Optimizer::keep_step_scalars_in_memory.
  std::string cuda_graph_obstacle() const override { return {}; }
  void rebuild_tables_next_step() override {
    product_segments_.clear();
    product_table_ = {};
    apply_segments_.clear();
    apply_table_ = {};
  }
  void save_state(std::map<std::string, Tensor>& tensors) const override;
  void load_state(const std::map<std::string, Tensor>& tensors,
                  MultiTaskModel<float>& model) override;

  // The coefficients of the last step and the cumulative sign cases (copies from the device).
  RouterCoefficients last_coefficients() const;
  std::array<std::int64_t, 4> case_counts() const;

 private:
  // Products, coefficients, route (+ update when `optimizer` is given), updater.
  void run_router(MultiTaskModel<float>& model, Optimizer<float>* optimizer);
  // Rebuilds the segment tables when a tower's array moved (normally only on the first step).
  void refresh_tables(const MultiTaskModel<float>& model, Optimizer<float>* optimizer);
  void write_telemetry(std::int64_t step, const kernels::RouterState& state);

  DrgradSettings settings_;
  kernels::RouterRule rule_;
  std::vector<std::string> aux_groups_;
  kernels::RouterWorkspace workspace_;
  std::vector<kernels::RouterProductSegment<float>> product_segments_;
  std::vector<kernels::RouterApplySegment<float>> apply_segments_;
  kernels::RouterProductTable<float> product_table_;
  kernels::RouterApplyTable<float> apply_table_;
  std::ofstream telemetry_;
};

}  // namespace drgrad::engine
