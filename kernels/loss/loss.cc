// CPU twin of the per-task losses, argument checks, and the dispatch between CPU and CUDA.
#include "kernels/loss/loss.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "kernels/core/dispatch.h"
#include "kernels/loss/loss_math.h"

namespace drgrad::kernels {

TaskLoss parse_task_loss(const std::string& name) {
  if (name == "sigmoid_cross_entropy" || name == "bce") return TaskLoss::kSigmoidCrossEntropy;
  if (name == "squared_error" || name == "mse") return TaskLoss::kSquaredError;
  throw std::invalid_argument("unknown task loss '" + name +
                              "': use sigmoid_cross_entropy (bce) or squared_error (mse)");
}

const char* task_loss_name(TaskLoss loss) {
  switch (loss) {
    case TaskLoss::kSigmoidCrossEntropy:
      return "sigmoid_cross_entropy";
    case TaskLoss::kSquaredError:
      return "squared_error";
  }
  return "?";
}

namespace {

template <typename T>
void check_column(const char* op, const TaskLossColumn<T>& column) {
  const std::string where = std::string(op) + ": ";
  if (column.batch_size < 0) {
    throw std::invalid_argument(where + "batch_size " + std::to_string(column.batch_size) +
                                " is negative");
  }
  if (column.logit_stride < 1 || column.label_stride < 1 || column.output_stride < 1) {
    throw std::invalid_argument(where + "strides must be at least 1 (logit " +
                                std::to_string(column.logit_stride) + ", label " +
                                std::to_string(column.label_stride) + ", output " +
                                std::to_string(column.output_stride) + ")");
  }
  if (column.batch_size > 0 && (column.logits == nullptr || column.labels == nullptr)) {
    throw std::invalid_argument(where + "logits and labels must not be null");
  }
}

void check_positive_weight(float positive_weight) {
  if (!std::isfinite(positive_weight) || positive_weight < 0.f) {
    throw std::invalid_argument("sigmoid_cross_entropy: positive_weight " +
                                std::to_string(positive_weight) +
                                " must be finite and non-negative (1 is the unweighted loss)");
  }
}

template <typename T>
void check_multitask_batch(const MultiTaskLossBatch<T>& batch,
                           std::span<const TaskLossSpec> specs) {
  const std::string where = "multitask_loss: ";
  if (batch.batch_size < 0) {
    throw std::invalid_argument(where + "batch_size " + std::to_string(batch.batch_size) +
                                " is negative");
  }
  if (batch.tasks < 1 || batch.tasks > kMaxLossTasks) {
    throw std::invalid_argument(where + std::to_string(batch.tasks) +
                                " tasks; one call takes 1 to " + std::to_string(kMaxLossTasks) +
                                " tasks (split the tasks over several calls)");
  }
  if (static_cast<std::int64_t>(specs.size()) != batch.tasks) {
    throw std::invalid_argument(where + std::to_string(specs.size()) + " task specs for " +
                                std::to_string(batch.tasks) + " tasks; pass one spec per task");
  }
  if (batch.label_columns < 1) {
    throw std::invalid_argument(where + "label_columns " + std::to_string(batch.label_columns) +
                                " must be at least 1");
  }
  for (std::size_t k = 0; k < specs.size(); ++k) {
    if (specs[k].label_column < 0 || specs[k].label_column >= batch.label_columns) {
      throw std::invalid_argument(where + "task " + std::to_string(k) + " reads label column " +
                                  std::to_string(specs[k].label_column) + " of " +
                                  std::to_string(batch.label_columns));
    }
    if (specs[k].loss == TaskLoss::kSigmoidCrossEntropy) {
      check_positive_weight(specs[k].positive_weight);
    }
  }
  if (batch.batch_size > 0 && (batch.logits == nullptr || batch.labels == nullptr)) {
    throw std::invalid_argument(where + "logits and labels must not be null");
  }
}

}  // namespace

namespace cpu {

template <typename T>
T sigmoid_cross_entropy(const TaskLossColumn<T>& column, float positive_weight) {
  const T weight = T(positive_weight);
  double sum = 0.0;
  for (std::int64_t i = 0; i < column.batch_size; ++i) {
    const loss_math::SampleLoss<T> sample = loss_math::sigmoid_cross_entropy_sample(
        column.logits[i * column.logit_stride], T(column.labels[i * column.label_stride]), weight);
    sum += double(sample.loss);
    if (column.gradient != nullptr) {
      column.gradient[i * column.output_stride] = sample.gradient * column.gradient_scale;
    }
    if (column.prediction != nullptr)
      column.prediction[i * column.output_stride] = sample.prediction;
  }
  if (column.loss_sum != nullptr) *column.loss_sum = T(sum);
  return T(sum);
}

template <typename T>
T squared_error(const TaskLossColumn<T>& column) {
  double sum = 0.0;
  for (std::int64_t i = 0; i < column.batch_size; ++i) {
    const loss_math::SampleLoss<T> sample = loss_math::squared_error_sample(
        column.logits[i * column.logit_stride], T(column.labels[i * column.label_stride]));
    sum += double(sample.loss);
    if (column.gradient != nullptr) {
      column.gradient[i * column.output_stride] = sample.gradient * column.gradient_scale;
    }
    if (column.prediction != nullptr)
      column.prediction[i * column.output_stride] = sample.prediction;
  }
  if (column.loss_sum != nullptr) *column.loss_sum = T(sum);
  return T(sum);
}

template <typename T>
void multitask_loss(const MultiTaskLossBatch<T>& batch, std::span<const TaskLossSpec> specs) {
  std::int64_t non_finite = 0;
  for (std::int64_t k = 0; k < batch.tasks; ++k) {
    const TaskLossSpec& spec = specs[std::size_t(k)];
    const T weight = T(spec.positive_weight);
    const T scale = T(spec.gradient_scale);
    double sum = 0.0;
    for (std::int64_t i = 0; i < batch.batch_size; ++i) {
      const T z = batch.logits[i * batch.tasks + k];
      const T y = T(batch.labels[i * batch.label_columns + spec.label_column]);
      const loss_math::SampleLoss<T> sample =
          spec.loss == TaskLoss::kSigmoidCrossEntropy
              ? loss_math::sigmoid_cross_entropy_sample(z, y, weight)
              : loss_math::squared_error_sample(z, y);
      sum += double(sample.loss);
      if (!loss_math::is_finite(sample.loss)) ++non_finite;
      if (batch.gradient != nullptr) batch.gradient[i * batch.tasks + k] = sample.gradient * scale;
      if (batch.prediction != nullptr) batch.prediction[i * batch.tasks + k] = sample.prediction;
    }
    if (batch.loss_sums != nullptr) batch.loss_sums[k] = T(sum);
  }
  if (batch.non_finite_losses != nullptr) *batch.non_finite_losses = non_finite;
}

template float sigmoid_cross_entropy<float>(const TaskLossColumn<float>&, float);
template double sigmoid_cross_entropy<double>(const TaskLossColumn<double>&, float);
template float squared_error<float>(const TaskLossColumn<float>&);
template double squared_error<double>(const TaskLossColumn<double>&);
template void multitask_loss<float>(const MultiTaskLossBatch<float>&,
                                    std::span<const TaskLossSpec>);
template void multitask_loss<double>(const MultiTaskLossBatch<double>&,
                                     std::span<const TaskLossSpec>);
}  // namespace cpu

template <typename T>
void sigmoid_cross_entropy(const Context& ctx, const TaskLossColumn<T>& column,
                           float positive_weight) {
  check_column("sigmoid_cross_entropy", column);
  check_positive_weight(positive_weight);
  DRGRAD_DISPATCH(T, ctx, sigmoid_cross_entropy, column, positive_weight);
}

template <typename T>
void squared_error(const Context& ctx, const TaskLossColumn<T>& column) {
  check_column("squared_error", column);
  DRGRAD_DISPATCH(T, ctx, squared_error, column);
}

template <typename T>
void multitask_loss(const Context& ctx, const MultiTaskLossBatch<T>& batch,
                    std::span<const TaskLossSpec> specs) {
  check_multitask_batch(batch, specs);
  DRGRAD_DISPATCH(T, ctx, multitask_loss, batch, specs);
}

template void sigmoid_cross_entropy<float>(const Context&, const TaskLossColumn<float>&, float);
template void sigmoid_cross_entropy<double>(const Context&, const TaskLossColumn<double>&, float);
template void squared_error<float>(const Context&, const TaskLossColumn<float>&);
template void squared_error<double>(const Context&, const TaskLossColumn<double>&);
template void multitask_loss<float>(const Context&, const MultiTaskLossBatch<float>&,
                                    std::span<const TaskLossSpec>);
template void multitask_loss<double>(const Context&, const MultiTaskLossBatch<double>&,
                                     std::span<const TaskLossSpec>);

}  // namespace drgrad::kernels
