// Exact AUC by sorting and counting tied groups, log-loss, MSE, and the per-task accumulator.
#include "engine/metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

namespace drgrad::engine {
namespace {

void check_same_length(const char* metric, std::size_t first, std::size_t second) {
  if (first != second) {
    throw std::invalid_argument(std::string(metric) + ": " + std::to_string(first) +
                                " scores but " + std::to_string(second) +
                                " labels; pass one label per score");
  }
}

constexpr double kNotANumber = std::numeric_limits<double>::quiet_NaN();

}  // namespace

double auc(std::span<const float> scores, std::span<const float> labels) {
  check_same_length("auc", scores.size(), labels.size());
  // (score, is positive), sorted by score; the label only matters within a group of equal scores,
  // where it is counted, not ordered.
  std::vector<std::pair<float, bool>> samples(scores.size());
  for (std::size_t i = 0; i < scores.size(); ++i) {
    if (std::isnan(scores[i]) || std::isnan(labels[i])) {
      throw std::invalid_argument("auc: sample " + std::to_string(i) + " has a NaN " +
                                  (std::isnan(scores[i]) ? "score" : "label") +
                                  "; the model or the data produced NaN before evaluation");
    }
    samples[i] = {scores[i], labels[i] >= kPositiveLabelThreshold};
  }
  std::sort(samples.begin(), samples.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });

  // Walking up the scores: every positive in a group beats all negatives below the group and
  // ties with the group's negatives. 2U is an integer, so count it exactly.
  std::int64_t negatives_below = 0, positives = 0, twice_u = 0;
  for (std::size_t begin = 0; begin < samples.size();) {
    std::size_t end = begin;
    std::int64_t group_positives = 0, group_negatives = 0;
    while (end < samples.size() && samples[end].first == samples[begin].first) {
      (samples[end].second ? group_positives : group_negatives) += 1;
      ++end;
    }
    twice_u += group_positives * (2 * negatives_below + group_negatives);
    negatives_below += group_negatives;
    positives += group_positives;
    begin = end;
  }
  const std::int64_t negatives = negatives_below;
  if (positives == 0 || negatives == 0) return kNotANumber;
  return double(twice_u) / (2.0 * double(positives) * double(negatives));
}

double log_loss(std::span<const float> probabilities, std::span<const float> labels) {
  check_same_length("log_loss", probabilities.size(), labels.size());
  if (probabilities.empty()) return kNotANumber;
  double sum = 0.0;
  for (std::size_t i = 0; i < probabilities.size(); ++i) {
    const double p = std::clamp(double(probabilities[i]), kLogLossClip, 1.0 - kLogLossClip);
    const double y = labels[i];
    sum -= y * std::log(p) + (1.0 - y) * std::log(1.0 - p);
  }
  return sum / double(probabilities.size());
}

double mean_squared_error(std::span<const float> predictions, std::span<const float> targets) {
  check_same_length("mean_squared_error", predictions.size(), targets.size());
  if (predictions.empty()) return kNotANumber;
  double sum = 0.0;
  for (std::size_t i = 0; i < predictions.size(); ++i) {
    const double difference = double(predictions[i]) - double(targets[i]);
    sum += difference * difference;
  }
  return sum / double(predictions.size());
}

void TaskMetricAccumulator::add(std::span<const float> scores, std::span<const float> labels) {
  check_same_length("TaskMetricAccumulator::add", scores.size(), labels.size());
  scores_.insert(scores_.end(), scores.begin(), scores.end());
  labels_.insert(labels_.end(), labels.begin(), labels.end());
}

void TaskMetricAccumulator::add_strided(const float* scores, std::int64_t score_stride,
                                        const float* labels, std::int64_t label_stride,
                                        std::int64_t count) {
  if (count < 0 || score_stride < 1 || label_stride < 1) {
    throw std::invalid_argument("TaskMetricAccumulator::add_strided: count " +
                                std::to_string(count) + " must be >= 0 and strides (" +
                                std::to_string(score_stride) + ", " + std::to_string(label_stride) +
                                ") >= 1");
  }
  scores_.reserve(scores_.size() + std::size_t(count));
  labels_.reserve(labels_.size() + std::size_t(count));
  for (std::int64_t i = 0; i < count; ++i) {
    scores_.push_back(scores[i * score_stride]);
    labels_.push_back(labels[i * label_stride]);
  }
}

void TaskMetricAccumulator::merge(const TaskMetricAccumulator& other) {
  if (&other == this) {
    // Inserting a vector's own range into itself is undefined; copy first.
    const TaskMetricAccumulator copy = other;
    merge(copy);
    return;
  }
  scores_.insert(scores_.end(), other.scores_.begin(), other.scores_.end());
  labels_.insert(labels_.end(), other.labels_.begin(), other.labels_.end());
}

void TaskMetricAccumulator::clear() {
  scores_.clear();
  labels_.clear();
}

TaskMetrics TaskMetricAccumulator::compute() const {
  TaskMetrics metrics;
  metrics.samples = size();
  metrics.positives = std::count_if(labels_.begin(), labels_.end(),
                                    [](float label) { return label >= kPositiveLabelThreshold; });
  metrics.auc = auc();
  metrics.log_loss = log_loss();
  metrics.mean_squared_error = mean_squared_error();
  return metrics;
}

}  // namespace drgrad::engine
