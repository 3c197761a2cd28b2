// MultiTaskLoss: one multi-task loss call over the whole [batch, tasks] matrix; the per-task loss
// sums come back to the host in one copy.
#include "engine/losses/multitask_loss.h"

#include "kernels/core/memory.h"
#include "kernels/loss/loss.h"

namespace drgrad::engine {

template <typename T>
Tensor MultiTaskLoss<T>::upload_labels(const io::Batch& batch) const {
  Tensor labels;
  stage_labels(batch, &labels);
  return labels;
}

template <typename T>
void MultiTaskLoss<T>::stage_labels(const io::Batch& batch, Tensor* labels) const {
  const std::int64_t num_labels =
      batch.size ? static_cast<std::int64_t>(batch.labels.size()) / batch.size : 0;
  labels->ensure(Shape{batch.size, num_labels}, DType::kFloat32, ctx_.device);
  labels->copy_from_host(batch.labels.data());
}

template <typename T>
LossResult MultiTaskLoss<T>::compute(const Tensor& logits, const Tensor& labels, Tensor* d_logits,
                                     bool copy_losses_to_host) const {
  const std::int64_t batch = logits.dim(0);
  const auto num_tasks = static_cast<std::int64_t>(tasks_.size());
  LossResult result;
  result.predictions = Tensor(logits.shape(), logits.dtype(), logits.device());
  if (d_logits != nullptr) *d_logits = Tensor(logits.shape(), logits.dtype(), logits.device());
  result.task_loss_sums = Tensor(Shape{num_tasks}, dtype_of<T>(), logits.device());
  Tensor& sums = result.task_loss_sums;
  result.non_finite_losses = Tensor(Shape{1}, DType::kInt64, logits.device());
  std::vector<kernels::TaskLossSpec> specs(tasks_.size());
  for (std::int64_t k = 0; k < num_tasks; ++k) {
    const TaskSpec& task = tasks_[k];
    specs[k].loss = task.type == TaskType::kBinary ? kernels::TaskLoss::kSigmoidCrossEntropy
                                                   : kernels::TaskLoss::kSquaredError;
    specs[k].positive_weight = static_cast<float>(task.positive_weight);
    specs[k].label_column = task.label_index;
    specs[k].gradient_scale = task.loss_weight / static_cast<double>(batch);
  }
  kernels::MultiTaskLossBatch<T> arguments;
  arguments.batch_size = batch;
  arguments.tasks = num_tasks;
  arguments.logits = logits.data<T>();
  arguments.labels = labels.data<float>();
  arguments.label_columns = labels.dim(1);
  arguments.gradient = d_logits != nullptr ? d_logits->data<T>() : nullptr;
  arguments.prediction = result.predictions.data<T>();
  arguments.loss_sums = sums.data<T>();
  arguments.non_finite_losses = result.non_finite_losses.data<std::int64_t>();
  kernels::multitask_loss<T>(ctx_, arguments, specs);
  if (!copy_losses_to_host) return result;
  // The one copy back per step: `tasks` sums.
  const std::vector<T> host_sums = sums.to_vector<T>();
  for (std::int64_t k = 0; k < num_tasks; ++k) {
    const double mean = static_cast<double>(host_sums[k]) / static_cast<double>(batch);
    result.task_losses.push_back(mean);
    result.total += tasks_[k].loss_weight * mean;
  }
  return result;
}

template class MultiTaskLoss<float>;
template class MultiTaskLoss<double>;

}  // namespace drgrad::engine
