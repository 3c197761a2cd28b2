// The multi-task loss L = sum_k alpha_k * mean_i loss_k(i): sigmoid cross-entropy (with a
// positive weight) for binary tasks, squared error for regression tasks. Produces the gradient
// with respect to every task's logit, each task's mean loss and the predictions.
#pragma once

#include <vector>

#include "engine/models/model_spec.h"
#include "engine/tensor/tensor.h"
#include "io/data/batch.h"

namespace drgrad::engine {

struct LossResult {
  // Unweighted mean loss of each task and sum_k alpha_k * task_losses[k]; empty and 0 when
  // compute() was asked not to copy the sums to the host.
  std::vector<double> task_losses;
  double total = 0;
  // [tasks] on the logits' device: each task's unscaled loss sum over the batch (in T).
  Tensor task_loss_sums;
  Tensor predictions;  // [batch, tasks]: probabilities or regression values
  // One int64 on the logits' device: how many (sample, task) losses were NaN or infinite. Not
  // copied to the host by compute(); read it only when a task loss is not finite.
  Tensor non_finite_losses;
};

template <typename T>
class MultiTaskLoss {
 public:
  MultiTaskLoss(std::vector<TaskSpec> tasks, kernels::Context ctx)
      : tasks_(std::move(tasks)), ctx_(ctx) {}

  // Uploads the batch's labels ([batch, num_labels] float) to the device once per batch.
  Tensor upload_labels(const io::Batch& batch) const;
  // The same into *labels, reusing its buffer when it already has the batch's shape (a captured
  // CUDA graph of the step reads the labels from there).
  void stage_labels(const io::Batch& batch, Tensor* labels) const;
  // logits: [batch, tasks]. Writes dL/dlogits into d_logits (allocated here) unless it is null.
  // With copy_losses_to_host (one small copy that waits for the device) task_losses and total are
  // filled in; without, the sums stay in task_loss_sums for the caller to fetch when it likes.
  LossResult compute(const Tensor& logits, const Tensor& labels, Tensor* d_logits,
                     bool copy_losses_to_host = true) const;

  const std::vector<TaskSpec>& tasks() const { return tasks_; }

 private:
  std::vector<TaskSpec> tasks_;
  kernels::Context ctx_;
};

}  // namespace drgrad::engine
