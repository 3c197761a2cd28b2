// CPU twin of the per-task losses, argument checks, and the dispatch between CPU and CUDA.
#include "kernels/loss/loss.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "kernels/core/dispatch.h"

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

}  // namespace

namespace cpu {
namespace {
// softplus(x) = log(1 + e^x), written as max(x, 0) + log1p(e^-|x|) so that e^ never overflows.
template <typename T>
T stable_softplus(T x) {
  return std::max(x, T(0)) + std::log1p(std::exp(-std::abs(x)));
}
template <typename T>
T sigmoid(T x) {
  return x >= 0 ? T(1) / (T(1) + std::exp(-x)) : std::exp(x) / (T(1) + std::exp(x));
}
}  // namespace

template <typename T>
T sigmoid_cross_entropy(const TaskLossColumn<T>& column, float positive_weight) {
  const T weight = T(positive_weight);
  double sum = 0.0;
  for (std::int64_t i = 0; i < column.batch_size; ++i) {
    const T z = column.logits[i * column.logit_stride];
    const T y = T(column.labels[i * column.label_stride]);
    const T probability = sigmoid(z);
    // -log s(z) = softplus(-z), -log(1 - s(z)) = softplus(z).
    sum += double(weight * y * stable_softplus(-z) + (T(1) - y) * stable_softplus(z));
    if (column.gradient != nullptr) {
      column.gradient[i * column.output_stride] =
          ((weight * y + T(1) - y) * probability - weight * y) * column.gradient_scale;
    }
    if (column.prediction != nullptr) column.prediction[i * column.output_stride] = probability;
  }
  if (column.loss_sum != nullptr) *column.loss_sum = T(sum);
  return T(sum);
}

template <typename T>
T squared_error(const TaskLossColumn<T>& column) {
  double sum = 0.0;
  for (std::int64_t i = 0; i < column.batch_size; ++i) {
    const T z = column.logits[i * column.logit_stride];
    const T difference = z - T(column.labels[i * column.label_stride]);
    sum += double(difference * difference);
    if (column.gradient != nullptr) {
      column.gradient[i * column.output_stride] = T(2) * difference * column.gradient_scale;
    }
    if (column.prediction != nullptr) column.prediction[i * column.output_stride] = z;
  }
  if (column.loss_sum != nullptr) *column.loss_sum = T(sum);
  return T(sum);
}

template float sigmoid_cross_entropy<float>(const TaskLossColumn<float>&, float);
template double sigmoid_cross_entropy<double>(const TaskLossColumn<double>&, float);
template float squared_error<float>(const TaskLossColumn<float>&);
template double squared_error<double>(const TaskLossColumn<double>&);
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

template void sigmoid_cross_entropy<float>(const Context&, const TaskLossColumn<float>&, float);
template void sigmoid_cross_entropy<double>(const Context&, const TaskLossColumn<double>&, float);
template void squared_error<float>(const Context&, const TaskLossColumn<float>&);
template void squared_error<double>(const Context&, const TaskLossColumn<double>&);

}  // namespace drgrad::kernels
