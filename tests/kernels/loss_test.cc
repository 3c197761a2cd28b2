// CPU twin of the per-task losses: values worked out by hand, gradients against central finite
// differences in double precision, stability at large |z|, strided columns and argument checks.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/loss/loss.h"

namespace {

using drgrad::kernels::Context;
using drgrad::kernels::TaskLossColumn;
namespace kernels = drgrad::kernels;

// Contiguous inputs and outputs for `logits.size()` samples.
template <typename T>
struct LossCase {
  std::vector<T> logits;
  std::vector<float> labels;
  std::vector<T> gradient;
  std::vector<T> prediction;
  T loss_sum = T(-1);

  LossCase(std::vector<T> z, std::vector<float> y)
      : logits(std::move(z)),
        labels(std::move(y)),
        gradient(logits.size()),
        prediction(logits.size()) {}

  TaskLossColumn<T> column(T gradient_scale = T(1)) {
    TaskLossColumn<T> result;
    result.batch_size = static_cast<std::int64_t>(logits.size());
    result.logits = logits.data();
    result.labels = labels.data();
    result.gradient_scale = gradient_scale;
    result.gradient = gradient.data();
    result.prediction = prediction.data();
    result.loss_sum = &loss_sum;
    return result;
  }
};

// The sum of one sample's loss written directly from the definition (not the softplus form), in
// double: valid for moderate |z| only.
double naive_cross_entropy(double z, double y, double w) {
  const double s = 1.0 / (1.0 + std::exp(-z));
  return -(w * y * std::log(s) + (1.0 - y) * std::log(1.0 - s));
}

}  // namespace

TEST_CASE("sigmoid cross-entropy matches hand-computed values", "[loss]") {
  // z = 0, y = 1: loss log 2, p = 1/2, gradient 1/2 - 1.
  // z = 2, y = 0: loss log(1 + e^2), gradient s(2).
  LossCase<double> unweighted({0.0, 2.0}, {1.f, 0.f});
  const double sum = kernels::cpu::sigmoid_cross_entropy(unweighted.column(), 1.f);
  const double s2 = 1.0 / (1.0 + std::exp(-2.0));
  CHECK(sum == Approx(std::log(2.0) + std::log(1.0 + std::exp(2.0))).epsilon(1e-14));
  CHECK(sum == Approx(0.6931471805599453 + 2.1269280110429727).epsilon(1e-14));
  CHECK(unweighted.loss_sum == sum);
  CHECK(unweighted.prediction[0] == Approx(0.5).epsilon(1e-15));
  CHECK(unweighted.prediction[1] == Approx(s2).epsilon(1e-15));
  CHECK(unweighted.gradient[0] == Approx(0.5 - 1.0).epsilon(1e-15));
  CHECK(unweighted.gradient[1] == Approx(s2).epsilon(1e-15));

  // Positive weight 3, z = -1, y = 1: loss 3 log(1 + e^1), gradient 3 s(-1) - 3.
  // Soft label y = 1/4 with w = 2, z = 1: loss 2 (1/4) log(1 + e^-1) + (3/4) log(1 + e^1),
  // gradient (2/4 + 3/4) s(1) - 2/4.
  LossCase<double> weighted({-1.0}, {1.f});
  CHECK(kernels::cpu::sigmoid_cross_entropy(weighted.column(), 3.f) ==
        Approx(3.0 * std::log(1.0 + std::exp(1.0))).epsilon(1e-14));
  CHECK(weighted.gradient[0] == Approx(3.0 / (1.0 + std::exp(1.0)) - 3.0).epsilon(1e-14));

  LossCase<double> soft({1.0}, {0.25f});
  const double s1 = 1.0 / (1.0 + std::exp(-1.0));
  CHECK(kernels::cpu::sigmoid_cross_entropy(soft.column(), 2.f) ==
        Approx(0.5 * std::log(1.0 + std::exp(-1.0)) + 0.75 * std::log(1.0 + std::exp(1.0)))
            .epsilon(1e-14));
  CHECK(soft.gradient[0] == Approx(1.25 * s1 - 0.5).epsilon(1e-14));
  CHECK(soft.prediction[0] == Approx(s1).epsilon(1e-15));
}

TEST_CASE("sigmoid cross-entropy agrees with the textbook form and scales its gradient", "[loss]") {
  std::mt19937 random(7);
  std::uniform_real_distribution<double> logit(-6.0, 6.0);
  std::uniform_real_distribution<float> label(0.f, 1.f);
  const int n = 50;
  std::vector<double> z(n);
  std::vector<float> y(n);
  for (int i = 0; i < n; ++i) z[i] = logit(random), y[i] = label(random);
  const float w = 2.5f;
  double expected_sum = 0.0;
  for (int i = 0; i < n; ++i) expected_sum += naive_cross_entropy(z[i], y[i], w);

  LossCase<double> unscaled(z, y), scaled(z, y);
  CHECK(kernels::cpu::sigmoid_cross_entropy(unscaled.column(), w) ==
        Approx(expected_sum).epsilon(1e-12));
  kernels::cpu::sigmoid_cross_entropy(scaled.column(0.125), w);
  for (int i = 0; i < n; ++i) {
    CHECK(scaled.gradient[i] == Approx(0.125 * unscaled.gradient[i]).epsilon(1e-15));
  }
}

TEST_CASE("loss gradients match central finite differences in double", "[loss]") {
  std::mt19937 random(11);
  std::uniform_real_distribution<double> logit(-8.0, 8.0);
  std::uniform_real_distribution<float> label(0.f, 1.f);
  const double h = 1e-5;
  for (int trial = 0; trial < 200; ++trial) {
    const double z = logit(random);
    const float y = trial % 3 == 0 ? float(trial % 2) : label(random);
    const float w = trial % 4 == 0 ? 1.f : 0.5f + float(trial % 7);

    LossCase<double> at({z}, {y}), plus({z + h}, {y}), minus({z - h}, {y});
    kernels::cpu::sigmoid_cross_entropy(at.column(), w);
    const double numeric = (kernels::cpu::sigmoid_cross_entropy(plus.column(), w) -
                            kernels::cpu::sigmoid_cross_entropy(minus.column(), w)) /
                           (2 * h);
    CHECK(at.gradient[0] == Approx(numeric).epsilon(1e-7).margin(1e-8));

    LossCase<double> squared_at({z}, {y}), squared_plus({z + h}, {y}), squared_minus({z - h}, {y});
    kernels::cpu::squared_error(squared_at.column());
    const double squared_numeric = (kernels::cpu::squared_error(squared_plus.column()) -
                                    kernels::cpu::squared_error(squared_minus.column())) /
                                   (2 * h);
    CHECK(squared_at.gradient[0] == Approx(squared_numeric).epsilon(1e-7).margin(1e-8));
  }
}

TEST_CASE("sigmoid cross-entropy stays finite and exact at large |z|", "[loss]") {
  // Far from zero, softplus(z) = z for z > 0 and ~0 for z < 0; the textbook form would give
  // log(0) = -inf here.
  LossCase<float> big({100.f, 100.f, -100.f, -100.f, 1e4f, -1e4f, 3e38f, -3e38f},
                      {0.f, 1.f, 0.f, 1.f, 0.f, 1.f, 1.f, 0.f});
  const float sum = kernels::cpu::sigmoid_cross_entropy(big.column(), 2.f);
  REQUIRE(std::isfinite(sum));
  for (std::size_t i = 0; i < big.logits.size(); ++i) {
    CHECK(std::isfinite(big.gradient[i]));
    CHECK(std::isfinite(big.prediction[i]));
  }
  // Confident and right: no loss, no gradient.
  CHECK(big.gradient[1] == 0.f);
  CHECK(big.gradient[2] == Approx(0.f).margin(1e-40));  // s(-100) ~ 4e-44, a float denormal
  CHECK(big.gradient[6] == 0.f);
  CHECK(big.gradient[7] == 0.f);
  // Confident and wrong: loss |z| (times w for positives), gradient s - w y at saturation.
  CHECK(big.gradient[0] == 1.f);
  CHECK(big.gradient[3] == -2.f);
  CHECK(big.gradient[4] == 1.f);
  CHECK(big.gradient[5] == -2.f);
  CHECK(big.prediction[0] == 1.f);
  CHECK(big.prediction[3] == Approx(0.f).margin(1e-40));

  LossCase<double> single({-1e4}, {1.f});
  CHECK(kernels::cpu::sigmoid_cross_entropy(single.column(), 2.f) == Approx(2e4).epsilon(1e-15));
  LossCase<double> right({50.0}, {1.f});
  CHECK(kernels::cpu::sigmoid_cross_entropy(right.column(), 1.f) ==
        Approx(std::exp(-50.0)).epsilon(1e-12));
}

TEST_CASE("squared error matches hand-computed values", "[loss]") {
  // (3 - 1)^2 + (-0.5 - 0.5)^2 + (2 - 2)^2 = 4 + 1 + 0; gradients 2 (z - y) * scale.
  LossCase<float> values({3.f, -0.5f, 2.f}, {1.f, 0.5f, 2.f});
  CHECK(kernels::cpu::squared_error(values.column(0.5f)) == 5.f);
  CHECK(values.loss_sum == 5.f);
  CHECK(values.gradient == std::vector<float>{2.f, -1.f, 0.f});
  CHECK(values.prediction == values.logits);
}

TEST_CASE("losses read and write one column of a batch-major matrix", "[loss]") {
  const int batch = 5, tasks = 3, task = 1;
  std::vector<double> logits(batch * tasks), gradient(batch * tasks, -7.0),
      prediction(batch * tasks, -7.0);
  std::vector<float> labels(batch * tasks);
  for (int i = 0; i < batch * tasks; ++i) {
    logits[i] = 0.3 * i - 2.0;
    labels[i] = float(i % 2);
  }
  TaskLossColumn<double> column;
  column.batch_size = batch;
  column.logits = logits.data() + task;
  column.logit_stride = tasks;
  column.labels = labels.data() + task;
  column.label_stride = tasks;
  column.gradient = gradient.data() + task;
  column.prediction = prediction.data() + task;
  column.output_stride = tasks;
  double sum = 0.0;
  column.loss_sum = &sum;
  kernels::sigmoid_cross_entropy(Context::cpu(), column, 1.f);

  double expected_sum = 0.0;
  for (int i = 0; i < batch; ++i) {
    const int at = i * tasks + task;
    expected_sum += naive_cross_entropy(logits[at], labels[at], 1.0);
    const double s = 1.0 / (1.0 + std::exp(-logits[at]));
    CHECK(prediction[at] == Approx(s).epsilon(1e-14));
    CHECK(gradient[at] == Approx(s - labels[at]).epsilon(1e-14));
    for (int other = 0; other < tasks; ++other) {
      if (other == task) continue;
      CHECK(gradient[i * tasks + other] == -7.0);
      CHECK(prediction[i * tasks + other] == -7.0);
    }
  }
  CHECK(sum == Approx(expected_sum).epsilon(1e-13));
}

TEST_CASE("losses accept null outputs and an empty batch", "[loss]") {
  std::vector<float> z{1.f, -2.f}, y{1.f, 0.f};
  TaskLossColumn<float> column;
  column.batch_size = 2;
  column.logits = z.data();
  column.labels = y.data();
  CHECK(kernels::cpu::squared_error(column) == 0.f + 4.f);

  float sum = -1.f;
  TaskLossColumn<float> empty;
  empty.loss_sum = &sum;
  kernels::sigmoid_cross_entropy(Context::cpu(), empty, 1.f);
  CHECK(sum == 0.f);
}

TEST_CASE("losses reject bad arguments with a message", "[loss]") {
  std::vector<float> z{1.f}, y{1.f};
  TaskLossColumn<float> column;
  column.batch_size = 1;
  column.logits = z.data();
  column.labels = y.data();
  CHECK_THROWS_WITH(kernels::sigmoid_cross_entropy(Context::cpu(), column, -1.f),
                    Catch::Contains("positive_weight"));
  CHECK_THROWS_WITH(kernels::sigmoid_cross_entropy(Context::cpu(), column, std::nanf("")),
                    Catch::Contains("positive_weight"));
  TaskLossColumn<float> bad_stride = column;
  bad_stride.label_stride = 0;
  CHECK_THROWS_WITH(kernels::squared_error(Context::cpu(), bad_stride), Catch::Contains("strides"));
  TaskLossColumn<float> negative = column;
  negative.batch_size = -3;
  CHECK_THROWS_WITH(kernels::squared_error(Context::cpu(), negative), Catch::Contains("negative"));
  TaskLossColumn<float> missing = column;
  missing.labels = nullptr;
  CHECK_THROWS_AS(kernels::squared_error(Context::cpu(), missing), std::invalid_argument);

  CHECK(kernels::parse_task_loss("bce") == kernels::TaskLoss::kSigmoidCrossEntropy);
  CHECK(kernels::parse_task_loss("squared_error") == kernels::TaskLoss::kSquaredError);
  CHECK(std::string(kernels::task_loss_name(kernels::TaskLoss::kSquaredError)) == "squared_error");
  CHECK_THROWS_WITH(kernels::parse_task_loss("hinge"), Catch::Contains("unknown task loss"));
}

TEST_CASE("double-precision losses are refused on a CUDA context", "[loss]") {
  std::vector<double> z{1.0};
  std::vector<float> y{1.f};
  TaskLossColumn<double> column;
  column.batch_size = 1;
  column.logits = z.data();
  column.labels = y.data();
  Context cuda_context;
  cuda_context.device = kernels::Device::cuda(0);
  CHECK_THROWS_AS(kernels::squared_error(cuda_context, column), kernels::NotSupportedError);
}
