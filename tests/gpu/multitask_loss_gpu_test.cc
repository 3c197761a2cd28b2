// CUDA twin of the multi-task loss against its CPU twin on fresh random inputs: batch 1, sizes
// around and not multiples of the block, about a million elements, up to 64 tasks, labels read
// from shuffled columns, non-finite losses counted, and sums that repeat bit for bit.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/loss/loss.h"
#include "tests/gpu/kernel_gpu_support.h"

namespace {

namespace kernels = drgrad::kernels;
using drgrad::gpu_test::compare_close;
using drgrad::gpu_test::DeviceBuffer;
using kernels::MultiTaskLossBatch;
using kernels::TaskLoss;
using kernels::TaskLossSpec;

const float kPoison = std::numeric_limits<float>::quiet_NaN();

struct LossProblem {
  std::int64_t batch, tasks, label_columns;
  std::vector<float> logits, labels;
  std::vector<TaskLossSpec> specs;
};

// Logits in [-12, 12] with a tenth saturated at +-80; labels hard, soft or (for regression tasks'
// columns too) arbitrary in [0, 1]; every task reads a random column of label_columns.
LossProblem random_problem(std::mt19937& random, std::int64_t batch, std::int64_t tasks) {
  LossProblem problem{batch, tasks, tasks + 1, {}, {}, {}};
  problem.logits = drgrad::gpu_test::random_floats(random, std::size_t(batch * tasks), -12.f, 12.f);
  std::uniform_int_distribution<int> pick(0, 9);
  for (float& logit : problem.logits) {
    if (pick(random) == 0) logit = pick(random) < 5 ? 80.f : -80.f;
  }
  std::uniform_real_distribution<float> soft(0.f, 1.f);
  problem.labels.resize(std::size_t(batch * problem.label_columns));
  for (float& label : problem.labels) {
    const int kind = pick(random);
    label = kind < 4 ? 0.f : kind < 8 ? 1.f : soft(random);
  }
  std::uniform_int_distribution<std::int64_t> column(0, problem.label_columns - 1);
  for (std::int64_t k = 0; k < tasks; ++k) {
    TaskLossSpec spec;
    spec.loss = pick(random) < 7 ? TaskLoss::kSigmoidCrossEntropy : TaskLoss::kSquaredError;
    spec.positive_weight = k % 3 == 1 ? 3.f : 1.f;
    spec.label_column = column(random);
    spec.gradient_scale = (0.25 + double(k)) / double(batch);
    problem.specs.push_back(spec);
  }
  return problem;
}

template <typename Pointers>
MultiTaskLossBatch<float> batch_of(const LossProblem& problem, const float* logits,
                                   const float* labels, Pointers outputs) {
  MultiTaskLossBatch<float> batch;
  batch.batch_size = problem.batch;
  batch.tasks = problem.tasks;
  batch.logits = logits;
  batch.labels = labels;
  batch.label_columns = problem.label_columns;
  batch.gradient = outputs.gradient;
  batch.prediction = outputs.prediction;
  batch.loss_sums = outputs.loss_sums;
  batch.non_finite_losses = outputs.non_finite_losses;
  return batch;
}

struct OutputPointers {
  float* gradient;
  float* prediction;
  float* loss_sums;
  std::int64_t* non_finite_losses;
};

}  // namespace

TEST_CASE("CUDA multitask_loss matches the CPU twin on random batches of several shapes",
          "[gpu][loss][multitask_loss]") {
  DRGRAD_REQUIRE_GPU();
  std::mt19937 random = drgrad::gpu_test::fresh_generator();
  const std::vector<std::pair<std::int64_t, std::int64_t>> shapes{
      {1, 1}, {1, 3}, {255, 2}, {256, 1}, {257, 4}, {1000, 7}, {4099, 3}, {33, 64}, {250007, 4}};
  for (const auto& [batch, tasks] : shapes) {
    INFO("batch " << batch << ", tasks " << tasks);
    const LossProblem problem = random_problem(random, batch, tasks);
    const std::size_t n = std::size_t(batch * tasks);

    std::vector<float> cpu_gradient(n), cpu_prediction(n),
        cpu_sums(static_cast<std::size_t>(tasks));
    std::int64_t cpu_non_finite = -1;
    kernels::multitask_loss<float>(
        kernels::Context::cpu(),
        batch_of(problem, problem.logits.data(), problem.labels.data(),
                 OutputPointers{cpu_gradient.data(), cpu_prediction.data(), cpu_sums.data(),
                                &cpu_non_finite}),
        problem.specs);

    DeviceBuffer<float> logits(problem.logits), labels(problem.labels),
        gradient(std::vector<float>(n, kPoison)), prediction(std::vector<float>(n, kPoison)),
        sums(std::vector<float>(std::size_t(tasks), kPoison));
    DeviceBuffer<std::int64_t> non_finite(std::vector<std::int64_t>{-1});
    const MultiTaskLossBatch<float> device_batch = batch_of(
        problem, logits.data(), labels.data(),
        OutputPointers{gradient.data(), prediction.data(), sums.data(), non_finite.data()});
    kernels::multitask_loss<float>(drgrad::gpu_test::cuda_context(), device_batch, problem.specs);

    // (w y + 1 - y) s(z) - w y cancels when s(z) ~ y: allow a few float ulps of its parts
    // (w <= 3), times the largest scale, beyond the relative tolerance.
    const double gradient_absolute = 4.0 * 4.0 * 1.2e-7 * (0.25 + double(tasks)) / double(batch);
    const auto gradient_closeness =
        compare_close(gradient.download(), cpu_gradient, 1e-5, gradient_absolute);
    INFO("gradient: " << gradient_closeness);
    CHECK(gradient_closeness.mismatches == 0);
    const auto prediction_closeness =
        compare_close(prediction.download(), cpu_prediction, 1e-5, 1e-7);
    INFO("prediction: " << prediction_closeness);
    CHECK(prediction_closeness.mismatches == 0);
    // Float sums in a tree against double sums in order: a few float roundings per level.
    const auto sum_closeness = compare_close(sums.download(), cpu_sums, 2e-5, 1e-6);
    INFO("sums: " << sum_closeness);
    CHECK(sum_closeness.mismatches == 0);
    CHECK(non_finite.download()[0] == cpu_non_finite);

    // Deterministic: a second run gives the same bits.
    const std::vector<float> first_sums = sums.download();
    kernels::multitask_loss<float>(drgrad::gpu_test::cuda_context(), device_batch, problem.specs);
    CHECK(sums.download() == first_sums);
  }
}

TEST_CASE("CUDA multitask_loss counts non-finite losses, skips null outputs, empty batch",
          "[gpu][loss][multitask_loss]") {
  DRGRAD_REQUIRE_GPU();
  std::mt19937 random = drgrad::gpu_test::fresh_generator();
  LossProblem problem = random_problem(random, 1031, 3);
  std::uniform_int_distribution<std::size_t> position(0, problem.logits.size() - 1);
  for (int i = 0; i < 17; ++i) problem.logits[position(random)] = kPoison;
  for (std::size_t k = 0; k < problem.specs.size(); ++k) {
    problem.specs[k].loss = k == 1 ? TaskLoss::kSquaredError : TaskLoss::kSigmoidCrossEntropy;
  }
  problem.logits[3 * 5 + 1] = std::numeric_limits<float>::infinity();  // squared error: +inf

  std::vector<float> cpu_sums(3);
  std::int64_t cpu_non_finite = -1;
  kernels::multitask_loss<float>(
      kernels::Context::cpu(),
      batch_of(problem, problem.logits.data(), problem.labels.data(),
               OutputPointers{nullptr, nullptr, cpu_sums.data(), &cpu_non_finite}),
      problem.specs);
  REQUIRE(cpu_non_finite > 0);

  DeviceBuffer<float> logits(problem.logits), labels(problem.labels),
      sums(std::vector<float>(3, 0.f));
  DeviceBuffer<std::int64_t> non_finite(std::vector<std::int64_t>{-1});
  // Only the count.
  kernels::multitask_loss<float>(
      drgrad::gpu_test::cuda_context(),
      batch_of(problem, logits.data(), labels.data(),
               OutputPointers{nullptr, nullptr, nullptr, non_finite.data()}),
      problem.specs);
  CHECK(non_finite.download()[0] == cpu_non_finite);
  // Only the sums: NaN or inf exactly where the CPU twin has them.
  kernels::multitask_loss<float>(drgrad::gpu_test::cuda_context(),
                                 batch_of(problem, logits.data(), labels.data(),
                                          OutputPointers{nullptr, nullptr, sums.data(), nullptr}),
                                 problem.specs);
  const std::vector<float> gpu_sums = sums.download();
  for (std::size_t k = 0; k < 3; ++k) {
    CHECK(std::isnan(gpu_sums[k]) == std::isnan(cpu_sums[k]));
    CHECK(std::isinf(gpu_sums[k]) == std::isinf(cpu_sums[k]));
  }
  // An empty batch writes zeros.
  problem.batch = 0;
  kernels::multitask_loss<float>(
      drgrad::gpu_test::cuda_context(),
      batch_of(problem, logits.data(), labels.data(),
               OutputPointers{nullptr, nullptr, sums.data(), non_finite.data()}),
      problem.specs);
  CHECK(sums.download() == std::vector<float>(3, 0.f));
  CHECK(non_finite.download()[0] == 0);
}
