// DRGrad as a training strategy: the router on the split towers' gradients after every backward
// pass (Eq. 1-5), the updater of the mixing weights (Eq. 7), and per-step telemetry written as
// JSON lines that a plot can read directly.
#pragma once

#include <array>
#include <fstream>
#include <string>
#include <vector>

#include "engine/multitask/drgrad_router.h"
#include "engine/multitask/strategy.h"

namespace drgrad::engine {

struct DrgradSettings {
  RouterSettings router;
  double rho = 1.0;                  // updater decay; 1 is the paper
  std::int64_t telemetry_every = 1;  // 0: no telemetry
  std::string telemetry_path;        // JSON lines; empty: none
};

class DrgradStrategy final : public MultiTaskStrategy {
 public:
  // Checks that the model has split towers and that every routed tower has the same shape
  // (throws std::invalid_argument naming the towers that differ).
  DrgradStrategy(const DrgradSettings& settings, const MultiTaskModel<float>& model);

  const char* name() const override { return "drgrad"; }
  void after_backward(MultiTaskModel<float>& model, std::int64_t step) override;
  void save_state(std::map<std::string, Tensor>& tensors) const override;
  void load_state(const std::map<std::string, Tensor>& tensors,
                  MultiTaskModel<float>& model) override;

  const RouterCoefficients& last_coefficients() const { return last_; }
  const std::array<std::int64_t, 4>& case_counts() const { return case_counts_; }

 private:
  DrgradSettings settings_;
  MixingUpdater updater_;
  std::vector<std::string> aux_groups_;
  RouterCoefficients last_;
  std::array<std::int64_t, 4> case_counts_{};
  Tensor ones_;  // symmetric_heads: for the entry sums of the tower gradients
  std::ofstream telemetry_;
};

}  // namespace drgrad::engine
