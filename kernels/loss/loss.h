// Per-task losses on logits (sigmoid cross-entropy with a positive weight, squared error): the
// loss sum, the gradient with respect to the logits and the prediction, for one task column of a
// batch-major [batch, tasks] matrix at a time, or for every task of the matrix in one call.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "kernels/core/device.h"

namespace drgrad::kernels {

enum class TaskLoss { kSigmoidCrossEntropy, kSquaredError };

// "sigmoid_cross_entropy" | "bce", "squared_error" | "mse"; throws std::invalid_argument
// otherwise.
TaskLoss parse_task_loss(const std::string& name);
const char* task_loss_name(TaskLoss loss);

// One task's column of batch-major matrices: element i of a column is pointer[i * stride], so
// column k of a [batch, tasks] matrix is (matrix + k, tasks). All pointers live on the device of
// the op's context.
//   logits, labels     inputs, batch_size elements each (labels are float whatever T is).
//   gradient_scale     multiplies every gradient; the caller passes loss_weight / batch_size so
//                      that the gradient is that of loss_weight * mean(loss_i).
//   gradient           output dL/dz_i * gradient_scale, or nullptr to skip (evaluation).
//   prediction         output: the probability s(z_i) or the regression value z_i, or nullptr.
//   output_stride      stride shared by gradient and prediction.
//   loss_sum           output: one scalar, the unscaled sum over the batch of loss_i, or nullptr.
//                      On the CPU it is host memory (and the CPU twin also returns the sum); on a
//                      CUDA device it is device memory written by a kernel on the context's
//                      stream (overwritten, not accumulated): copy it to the host after the op.
//                      The CUDA sum is deterministic (fixed-order two-pass reduction).
// Outputs must not alias the inputs unless the strides match (gradient may overwrite logits).
template <typename T>
struct TaskLossColumn {
  std::int64_t batch_size = 0;
  const T* logits = nullptr;
  std::int64_t logit_stride = 1;
  const float* labels = nullptr;
  std::int64_t label_stride = 1;
  T gradient_scale = T(1);
  T* gradient = nullptr;
  T* prediction = nullptr;
  std::int64_t output_stride = 1;
  T* loss_sum = nullptr;
};

// Binary cross-entropy on logits z with labels y in [0, 1] (soft labels allowed) and a weight w
// on the positive term:
//   loss_i = -(w y log s(z) + (1 - y) log(1 - s(z))) = w y softplus(-z) + (1 - y) softplus(z),
//   dloss_i/dz = (w y + 1 - y) s(z) - w y,   prediction = s(z).
// Computed in the softplus form, finite for any finite z. w = 1 is the plain loss.
// Throws std::invalid_argument for batch_size < 0, a stride < 1 or a negative/non-finite w.
template <typename T>
void sigmoid_cross_entropy(const Context& ctx, const TaskLossColumn<T>& column,
                           float positive_weight);

// Squared error without the 1/2: loss_i = (z - y)^2, dloss_i/dz = 2 (z - y), prediction = z.
// Throws std::invalid_argument for batch_size < 0 or a stride < 1.
template <typename T>
void squared_error(const Context& ctx, const TaskLossColumn<T>& column);

// One task of a multitask_loss call.
struct TaskLossSpec {
  TaskLoss loss = TaskLoss::kSigmoidCrossEntropy;
  float positive_weight = 1.f;    // sigmoid cross-entropy only; finite and >= 0
  std::int64_t label_column = 0;  // the task's column of the labels matrix
  double gradient_scale = 1.0;    // converted to T, then multiplies the task's gradients
};

// The most tasks one multitask_loss call takes (the CUDA twin passes the task specs to its kernel
// by value).
inline constexpr std::int64_t kMaxLossTasks = 64;

// Every task of a batch at once. All pointers live on the device of the op's context.
//   logits             [batch_size, tasks], row-major and contiguous (task k of sample i at
//                      i * tasks + k).
//   labels             [batch_size, label_columns] floats; task k reads column
//                      specs[k].label_column.
//   gradient           output [batch_size, tasks]: dloss/dz * gradient_scale, or nullptr.
//   prediction         output [batch_size, tasks]: s(z) or z, or nullptr.
//   loss_sums          output [tasks]: each task's unscaled loss sum over the batch, or nullptr.
//                      Written, not accumulated (zeros for an empty batch). The CPU twin adds in
//                      double in sample order; the CUDA twin adds floats in a fixed tree (block
//                      partials, then one block adds them in order), the same bits every run.
//   non_finite_losses  output, one value, or nullptr: how many (sample, task) losses are NaN or
//                      infinite, so that a caller can tell a bad batch without reading the
//                      losses. Written, not accumulated.
// Per sample the arithmetic is that of sigmoid_cross_entropy / squared_error above (the shared
// functions of kernels/loss/loss_math.h), so a task's gradient and prediction equal the per-column
// op's bit for bit on the CPU. gradient and prediction may not alias each other or the inputs.
template <typename T>
struct MultiTaskLossBatch {
  std::int64_t batch_size = 0;
  std::int64_t tasks = 0;
  const T* logits = nullptr;
  const float* labels = nullptr;
  std::int64_t label_columns = 1;
  T* gradient = nullptr;
  T* prediction = nullptr;
  T* loss_sums = nullptr;
  std::int64_t* non_finite_losses = nullptr;
};

// The losses of all tasks of a batch in one call (on CUDA one element kernel over all tasks and
// one small kernel that finishes the sums). specs.size() must equal batch.tasks. Throws
// std::invalid_argument for negative sizes, tasks outside [1, kMaxLossTasks], a label column
// outside [0, label_columns), null inputs for a non-empty batch or a bad positive weight.
template <typename T>
void multitask_loss(const Context& ctx, const MultiTaskLossBatch<T>& batch,
                    std::span<const TaskLossSpec> specs);

namespace cpu {
template <typename T>
void multitask_loss(const MultiTaskLossBatch<T>& batch, std::span<const TaskLossSpec> specs);

// Return the loss sum (accumulated in double) and also write it to column.loss_sum when given.
template <typename T>
T sigmoid_cross_entropy(const TaskLossColumn<T>& column, float positive_weight);
template <typename T>
T squared_error(const TaskLossColumn<T>& column);
}  // namespace cpu

namespace cuda {
void sigmoid_cross_entropy(const Context& ctx, const TaskLossColumn<float>& column,
                           float positive_weight);
void squared_error(const Context& ctx, const TaskLossColumn<float>& column);
void multitask_loss(const Context& ctx, const MultiTaskLossBatch<float>& batch,
                    std::span<const TaskLossSpec> specs);
}  // namespace cuda

}  // namespace drgrad::kernels
