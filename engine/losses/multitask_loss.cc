// MultiTaskLoss: one loss kernel call per task column; loss sums come back to the host.
#include "engine/losses/multitask_loss.h"

#include "kernels/core/memory.h"
#include "kernels/loss/loss.h"

namespace drgrad::engine {

template <typename T>
Tensor MultiTaskLoss<T>::upload_labels(const io::Batch& batch) const {
  const std::int64_t num_labels =
      batch.size ? static_cast<std::int64_t>(batch.labels.size()) / batch.size : 0;
  Tensor labels(Shape{batch.size, num_labels}, DType::kFloat32, ctx_.device);
  kernels::copy_bytes(ctx_.device, labels.data<float>(), Device::cpu(), batch.labels.data(),
                      labels.bytes());
  return labels;
}

template <typename T>
LossResult MultiTaskLoss<T>::compute(const Tensor& logits, const Tensor& labels,
                                     Tensor* d_logits) const {
  const std::int64_t batch = logits.dim(0);
  const auto num_tasks = static_cast<std::int64_t>(tasks_.size());
  LossResult result;
  result.predictions = Tensor(logits.shape(), logits.dtype(), logits.device());
  if (d_logits != nullptr) *d_logits = Tensor(logits.shape(), logits.dtype(), logits.device());
  Tensor sums(Shape{num_tasks}, dtype_of<T>(), logits.device());
  for (std::int64_t k = 0; k < num_tasks; ++k) {
    const TaskSpec& task = tasks_[k];
    kernels::TaskLossColumn<T> column;
    column.batch_size = batch;
    column.logits = logits.data<T>() + k;
    column.logit_stride = num_tasks;
    column.labels = labels.data<float>() + task.label_index;
    column.label_stride = labels.dim(1);
    column.gradient_scale = static_cast<T>(task.loss_weight / static_cast<double>(batch));
    column.gradient = d_logits != nullptr ? d_logits->data<T>() + k : nullptr;
    column.prediction = result.predictions.data<T>() + k;
    column.output_stride = num_tasks;
    column.loss_sum = sums.data<T>() + k;
    if (task.type == TaskType::kBinary) {
      kernels::sigmoid_cross_entropy<T>(ctx_, column, static_cast<float>(task.positive_weight));
    } else {
      kernels::squared_error<T>(ctx_, column);
    }
  }
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
