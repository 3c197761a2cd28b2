// CUDA twin of kernels/loss against the CPU twin on fresh random inputs: several batch sizes
// (1, around the 256-thread block, beyond the 1024-block cap), strided task columns, null
// outputs, an empty batch, and a loss sum that is the same bits on every run.
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "kernels/loss/loss.h"
#include "tests/gpu/gpu_test_support.h"

namespace {

namespace kernels = drgrad::kernels;
using drgrad::gpu_test::compare_close;
using drgrad::gpu_test::DeviceBuffer;
using kernels::TaskLoss;
using kernels::TaskLossColumn;

constexpr float kSentinel = -7.f;

struct LossInputs {
  std::int64_t batch, tasks;
  std::vector<float> logits, labels;
};

LossInputs random_inputs(std::mt19937& random, std::int64_t batch, std::int64_t tasks,
                         TaskLoss loss) {
  LossInputs inputs{batch, tasks, {}, {}};
  const std::size_t n = std::size_t(batch * tasks);
  inputs.logits = drgrad::gpu_test::random_floats(random, n, -12.f, 12.f);
  std::uniform_int_distribution<int> pick(0, 9);
  for (std::size_t i = 0; i < n; ++i) {
    if (pick(random) == 0) inputs.logits[i] = pick(random) < 5 ? 80.f : -80.f;  // saturated
  }
  if (loss == TaskLoss::kSquaredError) {
    inputs.labels = drgrad::gpu_test::random_floats(random, n, -5.f, 5.f);
  } else {
    inputs.labels.resize(n);
    std::uniform_real_distribution<float> soft(0.f, 1.f);
    for (float& label : inputs.labels) {
      const int kind = pick(random);
      label = kind < 4 ? 0.f : kind < 8 ? 1.f : soft(random);
    }
  }
  return inputs;
}

// Column `task` of every matrix, outputs in matrices of the same shape as the logits.
template <typename T>
TaskLossColumn<T> column_of(const LossInputs& inputs, std::int64_t task, const T* logits,
                            const float* labels, T* gradient, T* prediction, T* loss_sum) {
  TaskLossColumn<T> column;
  column.batch_size = inputs.batch;
  column.logits = logits + task;
  column.logit_stride = inputs.tasks;
  column.labels = labels + task;
  column.label_stride = inputs.tasks;
  column.gradient_scale = T(0.7) / T(inputs.batch);
  column.gradient = gradient == nullptr ? nullptr : gradient + task;
  column.prediction = prediction == nullptr ? nullptr : prediction + task;
  column.output_stride = inputs.tasks;
  column.loss_sum = loss_sum;
  return column;
}

void run_loss(const kernels::Context& ctx, TaskLoss loss, const TaskLossColumn<float>& column,
              float positive_weight) {
  if (loss == TaskLoss::kSigmoidCrossEntropy) {
    kernels::sigmoid_cross_entropy(ctx, column, positive_weight);
  } else {
    kernels::squared_error(ctx, column);
  }
}

}  // namespace

TEST_CASE("CUDA losses match the CPU twin on random columns of several shapes", "[gpu][loss]") {
  DRGRAD_REQUIRE_GPU();
  std::mt19937 random(1234);
  const std::vector<std::pair<std::int64_t, std::int64_t>> shapes{
      {1, 1}, {1, 3}, {255, 1}, {256, 2}, {257, 2}, {1000, 1}, {4099, 3}, {300001, 1}};
  for (const TaskLoss loss : {TaskLoss::kSigmoidCrossEntropy, TaskLoss::kSquaredError}) {
    for (const auto& [batch, tasks] : shapes) {
      for (const float positive_weight : {1.f, 3.f}) {
        if (loss == TaskLoss::kSquaredError && positive_weight != 1.f) continue;
        INFO("loss " << kernels::task_loss_name(loss) << ", batch " << batch << ", tasks " << tasks
                     << ", positive_weight " << positive_weight);
        const LossInputs inputs = random_inputs(random, batch, tasks, loss);
        const std::int64_t task = tasks - 1;
        const std::size_t n = inputs.logits.size();

        std::vector<float> cpu_gradient(n, kSentinel), cpu_prediction(n, kSentinel);
        float cpu_sum = 0.f;
        run_loss(kernels::Context::cpu(), loss,
                 column_of(inputs, task, inputs.logits.data(), inputs.labels.data(),
                           cpu_gradient.data(), cpu_prediction.data(), &cpu_sum),
                 positive_weight);

        DeviceBuffer<float> logits(inputs.logits), labels(inputs.labels),
            gradient(std::vector<float>(n, kSentinel)),
            prediction(std::vector<float>(n, kSentinel)), loss_sum(std::vector<float>{-1.f});
        const TaskLossColumn<float> device_column =
            column_of(inputs, task, logits.data(), labels.data(), gradient.data(),
                      prediction.data(), loss_sum.data());
        run_loss(drgrad::gpu_test::cuda_context(), loss, device_column, positive_weight);

        // (w y + 1 - y) s(z) - w y cancels when s(z) ~ y, so allow a few float ulps of its
        // parts, (w + 1) * 2^-23, times the scale, beyond the relative tolerance.
        const double gradient_absolute =
            4.0 * (positive_weight + 1.0) * 1.2e-7 * 0.7 / double(batch);
        const auto gradient_closeness =
            compare_close(gradient.download(), cpu_gradient, 1e-5, gradient_absolute);
        INFO("gradient: " << gradient_closeness);
        CHECK(gradient_closeness.mismatches == 0);
        const auto prediction_closeness =
            compare_close(prediction.download(), cpu_prediction, 1e-5, 1e-7);
        INFO("prediction: " << prediction_closeness);
        CHECK(prediction_closeness.mismatches == 0);
        const float gpu_sum = loss_sum.download()[0];
        CHECK(gpu_sum == Approx(cpu_sum).epsilon(1e-5).margin(1e-6));

        // Deterministic: a second run gives the same bits.
        run_loss(drgrad::gpu_test::cuda_context(), loss, device_column, positive_weight);
        CHECK(loss_sum.download()[0] == gpu_sum);
      }
    }
  }
}

TEST_CASE("CUDA losses with only a loss sum, and with an empty batch", "[gpu][loss]") {
  DRGRAD_REQUIRE_GPU();
  std::mt19937 random(77);
  const LossInputs inputs = random_inputs(random, 777, 1, TaskLoss::kSigmoidCrossEntropy);
  float cpu_sum = 0.f;
  kernels::cpu::sigmoid_cross_entropy(
      column_of<float>(inputs, 0, inputs.logits.data(), inputs.labels.data(), nullptr, nullptr,
                       &cpu_sum),
      2.f);
  DeviceBuffer<float> logits(inputs.logits), labels(inputs.labels),
      loss_sum(std::vector<float>{-1.f});
  kernels::sigmoid_cross_entropy(
      drgrad::gpu_test::cuda_context(),
      column_of<float>(inputs, 0, logits.data(), labels.data(), nullptr, nullptr, loss_sum.data()),
      2.f);
  CHECK(loss_sum.download()[0] == Approx(cpu_sum).epsilon(1e-5));

  // Gradient only, no sum requested.
  std::vector<float> cpu_gradient(inputs.logits.size());
  kernels::cpu::squared_error(column_of<float>(inputs, 0, inputs.logits.data(),
                                               inputs.labels.data(), cpu_gradient.data(), nullptr,
                                               nullptr));
  DeviceBuffer<float> gradient(inputs.logits.size());
  kernels::squared_error(
      drgrad::gpu_test::cuda_context(),
      column_of<float>(inputs, 0, logits.data(), labels.data(), gradient.data(), nullptr, nullptr));
  CHECK(compare_close(gradient.download(), cpu_gradient, 1e-5, 1e-7).mismatches == 0);

  // An empty batch writes a zero sum.
  TaskLossColumn<float> empty;
  empty.loss_sum = loss_sum.data();
  kernels::squared_error(drgrad::gpu_test::cuda_context(), empty);
  CHECK(loss_sum.download()[0] == 0.f);
}
