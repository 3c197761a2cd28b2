// EvaluationAccumulator on the CPU: batches of several sizes (growing the buffers, with and
// without a reservation) give exactly the numbers of per-task TaskMetricAccumulators fed the same
// samples, as the trainer's evaluation did before; regression tasks get no AUC; bad input throws.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "engine/metrics/evaluation_accumulator.h"

namespace {

namespace engine = drgrad::engine;
using engine::DType;
using engine::Shape;
using engine::Tensor;

std::vector<engine::TaskSpec> three_tasks() {
  std::vector<engine::TaskSpec> tasks(3);
  tasks[0].name = "click";
  tasks[0].label_index = 2;
  tasks[1].name = "time";
  tasks[1].type = engine::TaskType::kRegression;
  tasks[1].label_index = 0;
  tasks[2].name = "buy";
  tasks[2].label_index = 1;
  return tasks;
}

}  // namespace

TEST_CASE("EvaluationAccumulator equals per-task host accumulators bit for bit",
          "[metrics][evaluation]") {
  const std::vector<engine::TaskSpec> tasks = three_tasks();
  for (const std::int64_t reservation : {std::int64_t(-1), std::int64_t(5000)}) {
    INFO("reservation " << reservation);
    std::mt19937 random(31);
    std::uniform_int_distribution<int> tied_score(0, 20);
    std::bernoulli_distribution positive(0.3);
    engine::EvaluationAccumulator accumulator(tasks, drgrad::kernels::Context::cpu());
    accumulator.reserve(reservation);
    std::vector<engine::TaskMetricAccumulator> expected(tasks.size());
    std::int64_t total = 0;
    for (const std::int64_t batch : {1, 7, 256, 1000, 3, 513}) {
      std::vector<float> predictions, labels;
      for (std::int64_t i = 0; i < batch * 3; ++i) predictions.push_back(tied_score(random) / 20.f);
      for (std::int64_t i = 0; i < batch * 4; ++i) {
        labels.push_back(i % 4 == 0 ? float(tied_score(random)) : positive(random) ? 1.f : 0.f);
      }
      accumulator.add(Tensor::from_vector(Shape{batch, 3}, predictions),
                      Tensor::from_vector(Shape{batch, 4}, labels));
      for (std::size_t k = 0; k < tasks.size(); ++k) {
        expected[k].add_strided(predictions.data() + k, 3, labels.data() + tasks[k].label_index, 4,
                                batch);
      }
      total += batch;
    }
    CHECK(accumulator.size() == total);
    const std::vector<engine::TaskMetrics> got = accumulator.compute();
    REQUIRE(got.size() == 3);
    for (std::size_t k = 0; k < tasks.size(); ++k) {
      INFO("task " << tasks[k].name);
      const engine::TaskMetrics want = expected[k].compute();
      CHECK(got[k].samples == want.samples);
      CHECK(got[k].positives == want.positives);
      CHECK(got[k].log_loss == want.log_loss);
      CHECK(got[k].mean_squared_error == want.mean_squared_error);
      if (tasks[k].type == engine::TaskType::kBinary) {
        CHECK(got[k].auc == want.auc);
        CHECK(got[k].auc > 0.3);  // random scores: near 1/2, and defined
      } else {
        CHECK(std::isnan(got[k].auc));
      }
    }
    accumulator.clear();
    CHECK(accumulator.size() == 0);
    const std::vector<engine::TaskMetrics> empty = accumulator.compute();
    CHECK(std::isnan(empty[0].auc));
    CHECK(std::isnan(empty[1].mean_squared_error));
  }
}

TEST_CASE("EvaluationAccumulator refuses mismatched batches and NaN in binary tasks",
          "[metrics][evaluation]") {
  engine::EvaluationAccumulator accumulator(three_tasks(), drgrad::kernels::Context::cpu());
  CHECK_THROWS_AS(accumulator.add(Tensor::zeros(Shape{2, 2}, DType::kFloat32),
                                  Tensor::zeros(Shape{2, 4}, DType::kFloat32)),
                  std::invalid_argument);
  accumulator.add(Tensor::from_vector(
                      Shape{2, 3}, std::vector<float>{0.1f, 1.f, 0.2f, 0.3f, 2.f, std::nanf("")}),
                  Tensor::from_vector(Shape{2, 4}, std::vector<float>(8, 1.f)));
  CHECK_THROWS_WITH(accumulator.add(Tensor::zeros(Shape{1, 3}, DType::kFloat32),
                                    Tensor::zeros(Shape{1, 5}, DType::kFloat32)),
                    Catch::Contains("5 label columns after batches with 4"));
  // Task 2 ("buy") is binary and has a NaN prediction.
  CHECK_THROWS_WITH(accumulator.compute(), Catch::Contains("task 2") && Catch::Contains("NaN"));
}
