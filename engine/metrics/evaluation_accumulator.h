// Collects every evaluation batch's predictions and labels in tensors on the model's device and
// computes each task's metrics once at the end (kernels::evaluation_metrics), so that on a GPU the
// predictions never travel to the host: a device-to-device copy per batch, a few numbers per task
// at the end.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/metrics/metrics.h"
#include "engine/models/model_spec.h"
#include "engine/tensor/tensor.h"

namespace drgrad::engine {

class EvaluationAccumulator {
 public:
  // The tasks in the column order of the predictions; ctx is where the tensors live and the
  // metrics run.
  EvaluationAccumulator(std::vector<TaskSpec> tasks, kernels::Context ctx);

  // Room for `samples` samples without growing (the buffers otherwise double as needed, and a
  // growth briefly holds the old and the new buffers). Memory: 4 bytes per sample per task and per
  // label column.
  void reserve(std::int64_t samples);

  // Appends predictions [batch, tasks] (float) and labels [batch, label_columns] (float), both on
  // the accumulator's device (copies within the device). Every batch must have the label columns
  // of the first; throws std::invalid_argument on a shape or device mismatch.
  void add(const Tensor& predictions, const Tensor& labels);

  std::int64_t size() const { return size_; }
  void clear() { size_ = 0; }

  // One entry per task, the same numbers as a TaskMetricAccumulator fed the same samples:
  // exact AUC for binary tasks (NaN for regression tasks, or when a class is absent), log-loss and
  // mean squared error for every task (NaN without samples). Throws std::invalid_argument when a
  // binary task has a NaN prediction or label.
  std::vector<TaskMetrics> compute() const;

 private:
  std::vector<TaskSpec> tasks_;
  kernels::Context ctx_;
  Tensor scores_;  // [capacity, tasks]
  Tensor labels_;  // [capacity, label_columns]
  std::int64_t size_ = 0;
  std::int64_t reserved_ = 0;

  void grow_to(std::int64_t capacity, std::int64_t label_columns);
};

}  // namespace drgrad::engine
