// Evaluation metrics of many tasks over every sample of an evaluation, computed where the samples
// are: exact ROC AUC (ties count one half), the log-loss sum and the squared-error sum per task.
// On a CUDA device only a few numbers per task come back to the host.
#pragma once

#include <cstdint>
#include <span>

#include "kernels/core/device.h"

namespace drgrad::kernels {

// One task of an evaluation_metrics call.
struct MetricTaskSpec {
  std::int64_t score_column = 0;  // the task's column of the scores matrix
  std::int64_t label_column = 0;  // the task's column of the labels matrix
  bool roc_auc = true;            // false: no sort (regression tasks), roc_auc comes back NaN
};

// Row-major matrices on the device of the op's context: sample i of task k is
// scores[i * score_columns + spec.score_column] and labels[i * label_columns + spec.label_column].
struct MetricInputs {
  std::int64_t samples = 0;
  const float* scores = nullptr;
  std::int64_t score_columns = 1;
  const float* labels = nullptr;
  std::int64_t label_columns = 1;
  float positive_threshold = 0.5f;  // a label >= this counts as positive for the AUC
  double log_loss_clip = 1e-7;      // scores clipped to [clip, 1 - clip] inside the log-loss
};

// One task's results, on the host.
struct TaskMetricTotals {
  std::int64_t samples = 0;
  std::int64_t positives = 0;      // labels >= positive_threshold
  double roc_auc = 0.0;            // NaN without positives or negatives, or when not asked for
  double log_loss_sum = 0.0;       // sum of -(y log p + (1 - y) log(1 - p)), p = clipped score
  double squared_error_sum = 0.0;  // sum of (score - label)^2
  std::int64_t nan_samples = 0;    // roc_auc tasks: samples whose score or label is NaN
};

// The most tasks one evaluation_metrics call takes (the CUDA twin passes the specs by value).
inline constexpr std::int64_t kMaxMetricTasks = 64;

// Fills results[k] for every specs[k] (results.size() == specs.size()).
//
// ROC AUC is exact: the Mann-Whitney U statistic over P * N, every (positive, negative) pair in
// which the positive scores higher counting 1, a tie 1/2; -0 and +0 are the same score. 2U is
// counted as an integer, so both twins return the same bits. For a task with roc_auc set, a NaN
// score or label is refused (std::invalid_argument naming the task and how many samples), as
// engine::auc does; tasks without roc_auc just carry NaN into their sums.
//
// The sums are in double: the CPU twin adds in sample order, the CUDA twin in a fixed tree (block
// partials added in order by one block per task): the same bits on every run of a given device,
// within a few double roundings of the CPU twin.
//
// CUDA: runs on the context's stream, synchronises it once at the end (to copy the results back).
// Scratch, allocated stream-ordered for the call and freed at its end: 16 bytes per sample for the
// sort keys (one task sorted at a time), CUB's temporary storage (sized by CUB at run time) and
// 48 bytes per (block, task) of partials, at most 256 blocks.
// Throws std::invalid_argument for negative sizes, columns out of range, more than
// kMaxMetricTasks tasks or null inputs with samples > 0. The twins themselves never throw on NaN:
// they count it in nan_samples (and then leave roc_auc NaN); this dispatching function throws.
void evaluation_metrics(const Context& ctx, const MetricInputs& inputs,
                        std::span<const MetricTaskSpec> specs, std::span<TaskMetricTotals> results);

// The AUC from twice the U statistic and the class counts (NaN when a class is absent). Shared by
// both twins so that equal counts give equal bits.
double roc_auc_from_counts(std::int64_t twice_u, std::int64_t positives, std::int64_t negatives);

namespace cpu {
void evaluation_metrics(const MetricInputs& inputs, std::span<const MetricTaskSpec> specs,
                        std::span<TaskMetricTotals> results);
}  // namespace cpu

namespace cuda {
void evaluation_metrics(const Context& ctx, const MetricInputs& inputs,
                        std::span<const MetricTaskSpec> specs, std::span<TaskMetricTotals> results);
}  // namespace cuda

}  // namespace drgrad::kernels
