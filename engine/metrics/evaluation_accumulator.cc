// EvaluationAccumulator: growing tensors on the model's device and one kernels::evaluation_metrics
// call at the end.
#include "engine/metrics/evaluation_accumulator.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "kernels/metrics/evaluation_metrics.h"

namespace drgrad::engine {

EvaluationAccumulator::EvaluationAccumulator(std::vector<TaskSpec> tasks, kernels::Context ctx)
    : tasks_(std::move(tasks)), ctx_(ctx) {}

void EvaluationAccumulator::grow_to(std::int64_t capacity, std::int64_t label_columns) {
  const auto num_tasks = static_cast<std::int64_t>(tasks_.size());
  Tensor scores(Shape{capacity, num_tasks}, DType::kFloat32, ctx_.device);
  Tensor labels(Shape{capacity, label_columns}, DType::kFloat32, ctx_.device);
  if (size_ > 0) {
    scores.narrow_first(0, size_).copy_from(scores_.narrow_first(0, size_));
    labels.narrow_first(0, size_).copy_from(labels_.narrow_first(0, size_));
  }
  scores_ = std::move(scores);
  labels_ = std::move(labels);
}

void EvaluationAccumulator::reserve(std::int64_t samples) {
  reserved_ = std::max(reserved_, samples);
  // Before the first batch the label columns are unknown: the first add() allocates reserved_.
  if (labels_.defined() && reserved_ > labels_.dim(0)) grow_to(reserved_, labels_.dim(1));
}

void EvaluationAccumulator::add(const Tensor& predictions, const Tensor& labels) {
  const auto num_tasks = static_cast<std::int64_t>(tasks_.size());
  const std::int64_t batch = predictions.dim(0);
  if (predictions.rank() != 2 || predictions.dim(1) != num_tasks || labels.rank() != 2 ||
      labels.dim(0) != batch || predictions.device() != ctx_.device ||
      labels.device() != ctx_.device) {
    throw std::invalid_argument(
        "EvaluationAccumulator::add: predictions " + shape_to_string(predictions.shape()) + " on " +
        predictions.device().to_string() + " and labels " + shape_to_string(labels.shape()) +
        " on " + labels.device().to_string() + "; expected [" + std::to_string(batch) + ", " +
        std::to_string(num_tasks) + "] and [" + std::to_string(batch) +
        ", label columns], both on " + ctx_.device.to_string());
  }
  if (labels_.defined() && labels.dim(1) != labels_.dim(1)) {
    throw std::invalid_argument(
        "EvaluationAccumulator::add: a batch with " + std::to_string(labels.dim(1)) +
        " label columns after batches with " + std::to_string(labels_.dim(1)));
  }
  if (batch == 0) return;
  const std::int64_t capacity = labels_.defined() ? labels_.dim(0) : 0;
  if (!labels_.defined() || size_ + batch > capacity) {
    grow_to(std::max({size_ + batch, 2 * capacity, reserved_}), labels.dim(1));
  }
  scores_.narrow_first(size_, batch).copy_from(predictions);
  labels_.narrow_first(size_, batch).copy_from(labels);
  size_ += batch;
}

std::vector<TaskMetrics> EvaluationAccumulator::compute() const {
  const std::size_t num_tasks = tasks_.size();
  std::vector<kernels::MetricTaskSpec> specs(num_tasks);
  for (std::size_t k = 0; k < num_tasks; ++k) {
    specs[k].score_column = static_cast<std::int64_t>(k);
    specs[k].label_column = tasks_[k].label_index;
    specs[k].roc_auc = tasks_[k].type == TaskType::kBinary;
  }
  kernels::MetricInputs inputs;
  inputs.samples = size_;
  if (size_ > 0) {
    inputs.scores = scores_.data<float>();
    inputs.score_columns = scores_.dim(1);
    inputs.labels = labels_.data<float>();
    inputs.label_columns = labels_.dim(1);
  } else {
    // Nothing collected: no label columns are known, so any task's column is accepted.
    inputs.label_columns = 1;
    for (auto& spec : specs) spec.label_column = 0;
    inputs.score_columns = std::max<std::int64_t>(1, static_cast<std::int64_t>(num_tasks));
  }
  inputs.positive_threshold = kPositiveLabelThreshold;
  inputs.log_loss_clip = kLogLossClip;
  std::vector<kernels::TaskMetricTotals> totals(num_tasks);
  kernels::evaluation_metrics(ctx_, inputs, specs, totals);

  constexpr double kNotANumber = std::numeric_limits<double>::quiet_NaN();
  std::vector<TaskMetrics> metrics(num_tasks);
  for (std::size_t k = 0; k < num_tasks; ++k) {
    metrics[k].samples = totals[k].samples;
    metrics[k].positives = totals[k].positives;
    metrics[k].auc = totals[k].roc_auc;
    const double samples = static_cast<double>(totals[k].samples);
    metrics[k].log_loss = size_ > 0 ? totals[k].log_loss_sum / samples : kNotANumber;
    metrics[k].mean_squared_error = size_ > 0 ? totals[k].squared_error_sum / samples : kNotANumber;
  }
  return metrics;
}

}  // namespace drgrad::engine
