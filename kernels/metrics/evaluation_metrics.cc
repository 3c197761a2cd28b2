// CPU twin of the evaluation metrics (the exact AUC by sorting and walking groups of equal scores,
// as engine::auc does), the argument checks, and the dispatch between CPU and CUDA.
#include "kernels/metrics/evaluation_metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "kernels/core/dispatch.h"

namespace drgrad::kernels {

double roc_auc_from_counts(std::int64_t twice_u, std::int64_t positives, std::int64_t negatives) {
  if (positives == 0 || negatives == 0) return std::numeric_limits<double>::quiet_NaN();
  return double(twice_u) / (2.0 * double(positives) * double(negatives));
}

namespace cpu {
namespace {

// 2U of one task over (score, is positive) pairs: sorted by score, every positive of a group of
// equal scores beats all negatives below the group and ties with the group's negatives.
std::int64_t twice_mann_whitney_u(std::vector<std::pair<float, bool>>& samples) {
  std::sort(samples.begin(), samples.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::int64_t negatives_below = 0, twice_u = 0;
  for (std::size_t begin = 0; begin < samples.size();) {
    std::size_t end = begin;
    std::int64_t group_positives = 0, group_negatives = 0;
    while (end < samples.size() && samples[end].first == samples[begin].first) {
      (samples[end].second ? group_positives : group_negatives) += 1;
      ++end;
    }
    twice_u += group_positives * (2 * negatives_below + group_negatives);
    negatives_below += group_negatives;
    begin = end;
  }
  return twice_u;
}

}  // namespace

void evaluation_metrics(const MetricInputs& inputs, std::span<const MetricTaskSpec> specs,
                        std::span<TaskMetricTotals> results) {
  for (std::size_t k = 0; k < specs.size(); ++k) {
    const MetricTaskSpec& spec = specs[k];
    TaskMetricTotals totals;
    totals.samples = inputs.samples;
    std::vector<std::pair<float, bool>> ranked;
    if (spec.roc_auc) ranked.reserve(std::size_t(inputs.samples));
    // Sums in sample order, the same expressions as engine::log_loss / mean_squared_error.
    for (std::int64_t i = 0; i < inputs.samples; ++i) {
      const float score = inputs.scores[i * inputs.score_columns + spec.score_column];
      const float label = inputs.labels[i * inputs.label_columns + spec.label_column];
      const bool positive = label >= inputs.positive_threshold;
      totals.positives += positive ? 1 : 0;
      const double p = std::clamp(double(score), inputs.log_loss_clip, 1.0 - inputs.log_loss_clip);
      const double y = label;
      totals.log_loss_sum -= y * std::log(p) + (1.0 - y) * std::log(1.0 - p);
      const double difference = double(score) - double(label);
      totals.squared_error_sum += difference * difference;
      if (!spec.roc_auc) continue;
      if (std::isnan(score) || std::isnan(label)) ++totals.nan_samples;
      // -0 and +0 are one score (the comparison already says so; this keeps the pairs tidy).
      ranked.emplace_back(score == 0.f ? 0.f : score, positive);
    }
    if (spec.roc_auc && totals.nan_samples == 0) {
      totals.roc_auc = roc_auc_from_counts(twice_mann_whitney_u(ranked), totals.positives,
                                           totals.samples - totals.positives);
    } else {
      totals.roc_auc = std::numeric_limits<double>::quiet_NaN();
    }
    results[k] = totals;
  }
}

}  // namespace cpu

namespace {

void check_inputs(const MetricInputs& inputs, std::span<const MetricTaskSpec> specs,
                  std::span<TaskMetricTotals> results) {
  const std::string where = "evaluation_metrics: ";
  if (inputs.samples < 0) {
    throw std::invalid_argument(where + "samples " + std::to_string(inputs.samples) +
                                " is negative");
  }
  if (specs.size() != results.size()) {
    throw std::invalid_argument(where + std::to_string(specs.size()) + " task specs but " +
                                std::to_string(results.size()) +
                                " result slots; pass one slot per task");
  }
  if (static_cast<std::int64_t>(specs.size()) > kMaxMetricTasks) {
    throw std::invalid_argument(where + std::to_string(specs.size()) +
                                " tasks; one call takes at most " +
                                std::to_string(kMaxMetricTasks) + " (split the tasks)");
  }
  if (inputs.score_columns < 1 || inputs.label_columns < 1) {
    throw std::invalid_argument(where + "score_columns (" + std::to_string(inputs.score_columns) +
                                ") and label_columns (" + std::to_string(inputs.label_columns) +
                                ") must be at least 1");
  }
  for (std::size_t k = 0; k < specs.size(); ++k) {
    if (specs[k].score_column < 0 || specs[k].score_column >= inputs.score_columns ||
        specs[k].label_column < 0 || specs[k].label_column >= inputs.label_columns) {
      throw std::invalid_argument(where + "task " + std::to_string(k) + " reads score column " +
                                  std::to_string(specs[k].score_column) + " of " +
                                  std::to_string(inputs.score_columns) + " and label column " +
                                  std::to_string(specs[k].label_column) + " of " +
                                  std::to_string(inputs.label_columns));
    }
  }
  if (inputs.samples > 0 && (inputs.scores == nullptr || inputs.labels == nullptr)) {
    throw std::invalid_argument(where + "scores and labels must not be null");
  }
  if (!(inputs.log_loss_clip > 0.0 && inputs.log_loss_clip < 0.5)) {
    throw std::invalid_argument(where + "log_loss_clip " + std::to_string(inputs.log_loss_clip) +
                                " must lie in (0, 0.5)");
  }
}

void run_twin(const Context& ctx, const MetricInputs& inputs, std::span<const MetricTaskSpec> specs,
              std::span<TaskMetricTotals> results) {
  DRGRAD_DISPATCH(float, ctx, evaluation_metrics, inputs, specs, results);
}

}  // namespace

void evaluation_metrics(const Context& ctx, const MetricInputs& inputs,
                        std::span<const MetricTaskSpec> specs,
                        std::span<TaskMetricTotals> results) {
  check_inputs(inputs, specs, results);
  if (specs.empty()) return;
  run_twin(ctx, inputs, specs, results);
  for (std::size_t k = 0; k < specs.size(); ++k) {
    if (results[k].nan_samples > 0) {
      throw std::invalid_argument(
          "evaluation_metrics: task " + std::to_string(k) + " (score column " +
          std::to_string(specs[k].score_column) + ") has " +
          std::to_string(results[k].nan_samples) + " of " + std::to_string(results[k].samples) +
          " samples with a NaN score or label, so its AUC is undefined; the model or the data "
          "produced NaN before evaluation");
    }
  }
}

}  // namespace drgrad::kernels
