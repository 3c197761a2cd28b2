// CPU twin of the multi-task loss: every task of a [batch, tasks] matrix in one call equals the
// per-column ops bit for bit (gradients, predictions, sums), with labels read from shuffled
// columns; the non-finite count; an empty batch; argument checks.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/loss/loss.h"

namespace {

namespace kernels = drgrad::kernels;
using kernels::Context;
using kernels::MultiTaskLossBatch;
using kernels::TaskLoss;
using kernels::TaskLossSpec;

// Random logits (some saturated), labels in [label_columns] with hard, soft and regression values,
// and a random spec per task reading a random label column.
template <typename T>
struct MultiTaskCase {
  std::int64_t batch, tasks, label_columns;
  std::vector<T> logits;
  std::vector<float> labels;
  std::vector<TaskLossSpec> specs;

  MultiTaskCase(std::mt19937& random, std::int64_t batch_size, std::int64_t task_count)
      : batch(batch_size), tasks(task_count), label_columns(task_count + 2) {
    std::uniform_real_distribution<double> logit(-12.0, 12.0);
    std::uniform_real_distribution<float> soft(0.f, 1.f);
    std::uniform_int_distribution<int> pick(0, 9);
    for (std::int64_t i = 0; i < batch * tasks; ++i) {
      logits.push_back(pick(random) == 0 ? T(pick(random) < 5 ? 80 : -80) : T(logit(random)));
    }
    for (std::int64_t i = 0; i < batch * label_columns; ++i) {
      const int kind = pick(random);
      labels.push_back(kind < 4 ? 0.f : kind < 8 ? 1.f : soft(random));
    }
    std::uniform_int_distribution<std::int64_t> column(0, label_columns - 1);
    for (std::int64_t k = 0; k < tasks; ++k) {
      TaskLossSpec spec;
      spec.loss = pick(random) < 7 ? TaskLoss::kSigmoidCrossEntropy : TaskLoss::kSquaredError;
      spec.positive_weight = spec.loss == TaskLoss::kSigmoidCrossEntropy && k % 2 ? 3.f : 1.f;
      spec.label_column = column(random);
      spec.gradient_scale = (0.5 + double(k)) / double(batch);
      specs.push_back(spec);
    }
  }
};

template <typename T>
void check_against_columns(std::mt19937& random, std::int64_t batch, std::int64_t tasks) {
  INFO("batch " << batch << ", tasks " << tasks << ", " << sizeof(T) * 8 << "-bit");
  const MultiTaskCase<T> inputs(random, batch, tasks);
  const std::size_t n = std::size_t(batch * tasks);
  std::vector<T> gradient(n, T(-7)), prediction(n, T(-7)), sums(std::size_t(tasks), T(-7));
  std::int64_t non_finite = -1;
  MultiTaskLossBatch<T> arguments;
  arguments.batch_size = batch;
  arguments.tasks = tasks;
  arguments.logits = inputs.logits.data();
  arguments.labels = inputs.labels.data();
  arguments.label_columns = inputs.label_columns;
  arguments.gradient = gradient.data();
  arguments.prediction = prediction.data();
  arguments.loss_sums = sums.data();
  arguments.non_finite_losses = &non_finite;
  kernels::multitask_loss<T>(Context::cpu(), arguments, inputs.specs);
  CHECK(non_finite == 0);

  std::vector<T> column_gradient(n, T(-7)), column_prediction(n, T(-7));
  for (std::int64_t k = 0; k < tasks; ++k) {
    const TaskLossSpec& spec = inputs.specs[std::size_t(k)];
    kernels::TaskLossColumn<T> column;
    column.batch_size = batch;
    column.logits = inputs.logits.data() + k;
    column.logit_stride = tasks;
    column.labels = inputs.labels.data() + spec.label_column;
    column.label_stride = inputs.label_columns;
    column.gradient_scale = T(spec.gradient_scale);
    column.gradient = column_gradient.data() + k;
    column.prediction = column_prediction.data() + k;
    column.output_stride = tasks;
    T column_sum = T(-1);
    column.loss_sum = &column_sum;
    if (spec.loss == TaskLoss::kSigmoidCrossEntropy) {
      kernels::sigmoid_cross_entropy<T>(Context::cpu(), column, spec.positive_weight);
    } else {
      kernels::squared_error<T>(Context::cpu(), column);
    }
    CHECK(sums[std::size_t(k)] == column_sum);
  }
  // The same shared per-sample functions: equal bits, not just close values.
  CHECK(gradient == column_gradient);
  CHECK(prediction == column_prediction);
}

}  // namespace

TEST_CASE("multitask_loss equals the per-column losses bit for bit", "[loss][multitask_loss]") {
  std::mt19937 random(515);
  for (const auto& [batch, tasks] : std::vector<std::pair<std::int64_t, std::int64_t>>{
           {1, 1}, {1, 5}, {7, 2}, {257, 3}, {1000, 4}, {33, 64}}) {
    check_against_columns<float>(random, batch, tasks);
    check_against_columns<double>(random, batch, tasks);
  }
}

TEST_CASE("multitask_loss counts non-finite losses and skips null outputs",
          "[loss][multitask_loss]") {
  // Task 0: cross-entropy on NaN and on a finite logit; task 1: squared error on +inf and on a
  // label of 1e30 (the square overflows float to +inf).
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> logits{nan, inf, 0.f, 0.f};
  const std::vector<float> labels{1.f, 0.f, 1.f, 1e30f};
  std::vector<TaskLossSpec> specs(2);
  specs[0].label_column = 0;
  specs[1].loss = TaskLoss::kSquaredError;
  specs[1].label_column = 1;
  std::vector<float> sums(2, -1.f);
  std::int64_t non_finite = -1;
  MultiTaskLossBatch<float> arguments;
  arguments.batch_size = 2;
  arguments.tasks = 2;
  arguments.logits = logits.data();
  arguments.labels = labels.data();
  arguments.label_columns = 2;
  arguments.loss_sums = sums.data();
  arguments.non_finite_losses = &non_finite;
  kernels::multitask_loss<float>(Context::cpu(), arguments, specs);
  CHECK(non_finite == 3);
  CHECK(std::isnan(sums[0]));
  CHECK(std::isinf(sums[1]));

  // Only the count asked for.
  arguments.loss_sums = nullptr;
  non_finite = -1;
  kernels::multitask_loss<float>(Context::cpu(), arguments, specs);
  CHECK(non_finite == 3);

  // An empty batch writes zeros.
  sums.assign(2, -1.f);
  arguments.loss_sums = sums.data();
  arguments.batch_size = 0;
  kernels::multitask_loss<float>(Context::cpu(), arguments, specs);
  CHECK(sums == std::vector<float>{0.f, 0.f});
  CHECK(non_finite == 0);
}

TEST_CASE("multitask_loss refuses bad arguments", "[loss][multitask_loss]") {
  const std::vector<float> logits{0.f, 0.f}, labels{1.f, 0.f};
  std::vector<TaskLossSpec> specs(2);
  MultiTaskLossBatch<float> arguments;
  arguments.batch_size = 1;
  arguments.tasks = 2;
  arguments.logits = logits.data();
  arguments.labels = labels.data();
  arguments.label_columns = 2;
  CHECK_NOTHROW(kernels::multitask_loss<float>(Context::cpu(), arguments, specs));

  CHECK_THROWS_WITH(
      kernels::multitask_loss<float>(Context::cpu(), arguments, std::span(specs).first(1)),
      Catch::Contains("1 task specs for 2 tasks"));
  specs[1].label_column = 2;
  CHECK_THROWS_WITH(kernels::multitask_loss<float>(Context::cpu(), arguments, specs),
                    Catch::Contains("task 1 reads label column 2 of 2"));
  specs[1].label_column = 1;
  specs[0].positive_weight = -1.f;
  CHECK_THROWS_WITH(kernels::multitask_loss<float>(Context::cpu(), arguments, specs),
                    Catch::Contains("positive_weight"));
  specs[0].positive_weight = 1.f;

  MultiTaskLossBatch<float> too_many = arguments;
  too_many.tasks = kernels::kMaxLossTasks + 1;
  std::vector<TaskLossSpec> many(std::size_t(too_many.tasks));
  CHECK_THROWS_WITH(kernels::multitask_loss<float>(Context::cpu(), too_many, many),
                    Catch::Contains("1 to 64 tasks"));
  MultiTaskLossBatch<float> negative = arguments;
  negative.batch_size = -1;
  CHECK_THROWS_WITH(kernels::multitask_loss<float>(Context::cpu(), negative, specs),
                    Catch::Contains("negative"));
  MultiTaskLossBatch<float> missing = arguments;
  missing.logits = nullptr;
  CHECK_THROWS_AS(kernels::multitask_loss<float>(Context::cpu(), missing, specs),
                  std::invalid_argument);

  // Double on a CUDA device is refused whatever this build has.
  MultiTaskLossBatch<double> on_device;
  on_device.tasks = 2;
  on_device.label_columns = 2;
  Context cuda_context;
  cuda_context.device = kernels::Device::cuda(0);
  CHECK_THROWS_AS(kernels::multitask_loss<double>(cuda_context, on_device, specs),
                  kernels::NotSupportedError);
}
