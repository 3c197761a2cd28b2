// Evaluation metrics for one task: exact ROC AUC, log-loss and mean squared error, and an
// accumulator that collects (score, label) pairs over many batches (and ranks) and computes them
// at the end. Host-side only; inputs are plain float arrays.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace drgrad::engine {

// A sample counts as positive for AUC when its label is at least this (labels are expected to be
// 0 or 1; soft or regression labels must be made binary by the caller first if another rule is
// wanted).
inline constexpr float kPositiveLabelThreshold = 0.5f;

// Log-loss clips probabilities to [kLogLossClip, 1 - kLogLossClip] (in double), so a confident
// wrong prediction costs at most -log(1e-7) ~ 16.1 instead of infinity.
inline constexpr double kLogLossClip = 1e-7;

// Exact ROC AUC: the Mann-Whitney U statistic divided by P * N, i.e. the fraction of
// (positive, negative) pairs in which the positive has the higher score, ties counting 1/2.
// O(n log n) time, O(n) extra memory. Returns NaN when there are no positives or no negatives
// (the AUC is undefined). Throws std::invalid_argument when the spans differ in length or a
// score or label is NaN (the message gives the position).
double auc(std::span<const float> scores, std::span<const float> labels);

// Mean over samples of -(y log p + (1 - y) log(1 - p)), p clipped as above; labels in [0, 1].
// NaN for no samples. Throws std::invalid_argument when the spans differ in length.
double log_loss(std::span<const float> probabilities, std::span<const float> labels);

// Mean over samples of (prediction - target)^2 (no 1/2). NaN for no samples. Throws
// std::invalid_argument when the spans differ in length.
double mean_squared_error(std::span<const float> predictions, std::span<const float> targets);

// All three metrics of one task at once, with the counts they rest on.
struct TaskMetrics {
  std::int64_t samples = 0;
  std::int64_t positives = 0;  // labels >= kPositiveLabelThreshold
  double auc = 0.0;
  double log_loss = 0.0;
  double mean_squared_error = 0.0;
};

// Collects one task's (score, label) pairs across batches: memory grows by 8 bytes per sample
// until clear(). Scores are what the model predicts for the task (probabilities for
// classification, values for regression); which metric is meaningful is the caller's choice.
class TaskMetricAccumulator {
 public:
  // Appends scores[i], labels[i]; throws std::invalid_argument when the lengths differ.
  void add(std::span<const float> scores, std::span<const float> labels);
  // Appends scores[i * score_stride], labels[i * label_stride] for i < count: one column of a
  // batch-major [batch, tasks] matrix. Throws std::invalid_argument for count < 0 or a stride
  // below 1.
  void add_strided(const float* scores, std::int64_t score_stride, const float* labels,
                   std::int64_t label_stride, std::int64_t count);
  // Appends everything `other` has collected (for example from another rank). The order of
  // samples does not change any metric, so merging partial accumulators gives the same results
  // as one accumulator that saw every batch. Merging an accumulator into itself doubles it.
  void merge(const TaskMetricAccumulator& other);
  void clear();

  std::int64_t size() const { return static_cast<std::int64_t>(scores_.size()); }
  std::span<const float> scores() const { return scores_; }
  std::span<const float> labels() const { return labels_; }

  double auc() const { return engine::auc(scores_, labels_); }
  double log_loss() const { return engine::log_loss(scores_, labels_); }
  double mean_squared_error() const { return engine::mean_squared_error(scores_, labels_); }
  TaskMetrics compute() const;

 private:
  std::vector<float> scores_;
  std::vector<float> labels_;
};

}  // namespace drgrad::engine
