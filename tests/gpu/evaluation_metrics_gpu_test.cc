// CUDA twin of the evaluation metrics against its CPU twin on fresh random inputs: 1 sample, sizes
// around and not multiples of the block, about a million samples, heavy ties (including -0 and
// +0), one class only, several tasks at once; the AUC must equal the CPU twin's bit for bit (2U is
// an exact integer in both), the sums to 1e-9 relative, and every run must repeat its bits.
// Also the engine's EvaluationAccumulator on a CUDA device against the same on the CPU.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "engine/metrics/evaluation_accumulator.h"
#include "kernels/metrics/evaluation_metrics.h"
#include "tests/gpu/kernel_gpu_support.h"

namespace {

namespace kernels = drgrad::kernels;
using drgrad::gpu_test::DeviceBuffer;
using kernels::MetricInputs;
using kernels::MetricTaskSpec;
using kernels::TaskMetricTotals;

struct MetricProblem {
  std::int64_t samples, tasks, label_columns;
  std::vector<float> scores, labels;
  std::vector<MetricTaskSpec> specs;
};

// distinct > 0: scores from that many values around zero (zeros of both signs); distinct == 0:
// continuous scores in [0, 1). Labels: hard with the given positive rate, and some soft ones.
MetricProblem random_problem(std::mt19937& random, std::int64_t samples, std::int64_t tasks,
                             int distinct, double positive_rate) {
  MetricProblem problem{samples, tasks, tasks + 1, {}, {}, {}};
  std::uniform_int_distribution<int> tied(-distinct / 2, distinct - distinct / 2);
  std::uniform_real_distribution<float> continuous(0.f, 1.f);
  std::bernoulli_distribution positive(positive_rate);
  problem.scores.resize(std::size_t(samples * tasks));
  for (std::size_t i = 0; i < problem.scores.size(); ++i) {
    if (distinct == 0) {
      problem.scores[i] = continuous(random);
    } else {
      const int value = tied(random);
      problem.scores[i] = value == 0 && i % 2 ? -0.f : float(value) / float(distinct + 1);
    }
  }
  problem.labels.resize(std::size_t(samples * problem.label_columns));
  for (std::size_t i = 0; i < problem.labels.size(); ++i) {
    problem.labels[i] = i % 11 == 5 ? continuous(random) : positive(random) ? 1.f : 0.f;
  }
  for (std::int64_t k = 0; k < tasks; ++k) {
    problem.specs.push_back({k, problem.label_columns - 1 - k, k != 1});  // task 1: no AUC
  }
  return problem;
}

MetricInputs inputs_of(const MetricProblem& problem, const float* scores, const float* labels) {
  MetricInputs inputs;
  inputs.samples = problem.samples;
  inputs.scores = scores;
  inputs.score_columns = problem.tasks;
  inputs.labels = labels;
  inputs.label_columns = problem.label_columns;
  return inputs;
}

bool same_double(double a, double b) {
  return (std::isnan(a) && std::isnan(b)) || a == b;
}

}  // namespace

TEST_CASE("CUDA evaluation_metrics matches the CPU twin: AUC bit for bit, sums to rounding",
          "[gpu][metrics][auc]") {
  DRGRAD_REQUIRE_GPU();
  std::mt19937 random = drgrad::gpu_test::fresh_generator();
  struct Shape {
    std::int64_t samples, tasks;
    int distinct;
    double positive_rate;
  };
  const std::vector<Shape> shapes{{1, 1, 3, 0.5},          {2, 3, 1, 0.5},      {255, 2, 4, 0.3},
                                  {256, 3, 0, 0.5},        {257, 1, 2, 0.1},    {1000, 3, 50, 0.5},
                                  {4099, 4, 0, 0.02},      {777, 3, 5, 0.0},    {778, 3, 5, 1.0},
                                  {1000003, 3, 1000, 0.2}, {1000003, 1, 0, 0.5}};
  for (const Shape& shape : shapes) {
    INFO("samples " << shape.samples << ", tasks " << shape.tasks << ", distinct scores "
                    << shape.distinct << ", positive rate " << shape.positive_rate);
    const MetricProblem problem =
        random_problem(random, shape.samples, shape.tasks, shape.distinct, shape.positive_rate);
    std::vector<TaskMetricTotals> cpu(std::size_t(shape.tasks)), gpu(std::size_t(shape.tasks)),
        again(std::size_t(shape.tasks));
    kernels::evaluation_metrics(kernels::Context::cpu(),
                                inputs_of(problem, problem.scores.data(), problem.labels.data()),
                                problem.specs, cpu);
    const DeviceBuffer<float> scores(problem.scores), labels(problem.labels);
    const MetricInputs device_inputs = inputs_of(problem, scores.data(), labels.data());
    kernels::evaluation_metrics(drgrad::gpu_test::cuda_context(), device_inputs, problem.specs,
                                gpu);
    kernels::evaluation_metrics(drgrad::gpu_test::cuda_context(), device_inputs, problem.specs,
                                again);
    for (std::size_t k = 0; k < cpu.size(); ++k) {
      INFO("task " << k);
      CHECK(gpu[k].samples == cpu[k].samples);
      CHECK(gpu[k].positives == cpu[k].positives);
      CHECK(gpu[k].nan_samples == 0);
      CHECK(same_double(gpu[k].roc_auc, cpu[k].roc_auc));
      // Double sums of up to 1e6 positive terms, a tree against a loop, and the device's log
      // within an ulp of glibc's: far below 1e-9 relative; a wrong term would be far above.
      CHECK(gpu[k].log_loss_sum == Approx(cpu[k].log_loss_sum).epsilon(1e-9).margin(1e-12));
      CHECK(gpu[k].squared_error_sum ==
            Approx(cpu[k].squared_error_sum).epsilon(1e-9).margin(1e-12));
      // The same bits on a second run.
      CHECK(same_double(again[k].roc_auc, gpu[k].roc_auc));
      CHECK(again[k].log_loss_sum == gpu[k].log_loss_sum);
      CHECK(again[k].squared_error_sum == gpu[k].squared_error_sum);
    }
  }
}

TEST_CASE("CUDA evaluation_metrics refuses NaN like the CPU twin", "[gpu][metrics][auc]") {
  DRGRAD_REQUIRE_GPU();
  std::mt19937 random = drgrad::gpu_test::fresh_generator();
  MetricProblem problem = random_problem(random, 5000, 3, 0, 0.5);
  problem.scores[3 * 17 + 0] = std::numeric_limits<float>::quiet_NaN();  // task 0: AUC, refused
  problem.scores[3 * 18 + 1] = std::numeric_limits<float>::quiet_NaN();  // task 1: no AUC
  std::vector<TaskMetricTotals> cpu(3), gpu(3);
  kernels::cpu::evaluation_metrics(inputs_of(problem, problem.scores.data(), problem.labels.data()),
                                   problem.specs, cpu);
  const DeviceBuffer<float> scores(problem.scores), labels(problem.labels);
  kernels::cuda::evaluation_metrics(drgrad::gpu_test::cuda_context(),
                                    inputs_of(problem, scores.data(), labels.data()), problem.specs,
                                    gpu);
  for (std::size_t k = 0; k < 3; ++k) {
    CHECK(gpu[k].nan_samples == cpu[k].nan_samples);
    CHECK(same_double(gpu[k].roc_auc, cpu[k].roc_auc));
  }
  CHECK(gpu[0].nan_samples == 1);
  CHECK(std::isnan(gpu[1].squared_error_sum));
  CHECK_THROWS_WITH(kernels::evaluation_metrics(drgrad::gpu_test::cuda_context(),
                                                inputs_of(problem, scores.data(), labels.data()),
                                                problem.specs, gpu),
                    Catch::Contains("task 0") && Catch::Contains("1 of 5000 samples"));
}

TEST_CASE("EvaluationAccumulator on a CUDA device gives the CPU's numbers",
          "[gpu][metrics][evaluation]") {
  DRGRAD_REQUIRE_GPU();
  namespace engine = drgrad::engine;
  std::mt19937 random = drgrad::gpu_test::fresh_generator();
  std::vector<engine::TaskSpec> tasks(2);
  tasks[0].label_index = 1;
  tasks[1].type = engine::TaskType::kRegression;
  tasks[1].label_index = 0;
  engine::EvaluationAccumulator on_cpu(tasks, kernels::Context::cpu());
  engine::EvaluationAccumulator on_gpu(tasks, drgrad::gpu_test::cuda_context());
  std::uniform_int_distribution<int> tied(0, 30);
  for (const std::int64_t batch : {1, 300, 4096, 77, 5000}) {
    std::vector<float> predictions, labels;
    for (std::int64_t i = 0; i < 2 * batch; ++i) predictions.push_back(float(tied(random)) / 30.f);
    for (std::int64_t i = 0; i < 2 * batch; ++i) labels.push_back(float(tied(random) % 2));
    const engine::Tensor host_predictions =
        engine::Tensor::from_vector(engine::Shape{batch, 2}, predictions);
    const engine::Tensor host_labels = engine::Tensor::from_vector(engine::Shape{batch, 2}, labels);
    on_cpu.add(host_predictions, host_labels);
    on_gpu.add(host_predictions.to(kernels::Device::cuda(0)),
               host_labels.to(kernels::Device::cuda(0)));
  }
  const std::vector<engine::TaskMetrics> cpu = on_cpu.compute(), gpu = on_gpu.compute();
  for (std::size_t k = 0; k < 2; ++k) {
    CHECK(gpu[k].samples == cpu[k].samples);
    CHECK(gpu[k].positives == cpu[k].positives);
    CHECK(same_double(gpu[k].auc, cpu[k].auc));
    CHECK(gpu[k].log_loss == Approx(cpu[k].log_loss).epsilon(1e-9));
    CHECK(gpu[k].mean_squared_error == Approx(cpu[k].mean_squared_error).epsilon(1e-9));
  }
  CHECK(std::isnan(gpu[1].auc));
  CHECK(!std::isnan(gpu[0].auc));
}
