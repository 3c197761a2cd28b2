// CPU twin of the evaluation metrics: AUC of many tasks at once against a brute-force pair count
// on tie-heavy data, one class only, batch 1, -0 and +0, NaN refused; the sums against direct
// loops; and the CUDA twin's method (rank keys sorted in two tie orders, positions summed) run
// here with std::sort on the same keys.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/metrics/evaluation_metrics.h"
#include "kernels/metrics/rank_keys.h"

namespace {

namespace kernels = drgrad::kernels;
using kernels::Context;
using kernels::MetricInputs;
using kernels::MetricTaskSpec;
using kernels::TaskMetricTotals;

// The definition: over all (positive, negative) pairs, 1 when the positive scores higher, 1/2 on
// a tie. O(P * N). NaN when a class is absent.
double brute_force_auc(const std::vector<float>& scores, const std::vector<bool>& positive) {
  double wins = 0.0, pairs = 0.0;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    if (!positive[i]) continue;
    for (std::size_t j = 0; j < scores.size(); ++j) {
      if (positive[j]) continue;
      pairs += 1.0;
      if (scores[i] > scores[j]) wins += 1.0;
      if (scores[i] == scores[j]) wins += 0.5;
    }
  }
  return pairs == 0.0 ? std::numeric_limits<double>::quiet_NaN() : wins / pairs;
}

// [samples, tasks] scores from `distinct` values (ties everywhere, both signs, both zeros) and
// [samples, tasks + 1] labels (hard and soft) whose columns the tasks read in reverse.
struct MetricCase {
  std::int64_t samples, tasks;
  std::vector<float> scores, labels;
  std::vector<MetricTaskSpec> specs;

  MetricCase(std::mt19937& random, std::int64_t sample_count, std::int64_t task_count, int distinct,
             double positive_rate)
      : samples(sample_count), tasks(task_count) {
    std::uniform_int_distribution<int> score(-distinct / 2, distinct - distinct / 2);
    std::bernoulli_distribution positive(positive_rate);
    std::uniform_real_distribution<float> soft(0.f, 1.f);
    for (std::int64_t i = 0; i < samples * tasks; ++i) {
      const int value = score(random);
      scores.push_back(value == 0 && i % 2 ? -0.f : float(value) / float(distinct));
    }
    for (std::int64_t i = 0; i < samples * (tasks + 1); ++i) {
      labels.push_back(i % 7 == 3 ? soft(random) : positive(random) ? 1.f : 0.f);
    }
    for (std::int64_t k = 0; k < tasks; ++k) {
      specs.push_back({k, tasks - k, true});
    }
  }

  MetricInputs inputs() const {
    MetricInputs result;
    result.samples = samples;
    result.scores = scores.data();
    result.score_columns = tasks;
    result.labels = labels.data();
    result.label_columns = tasks + 1;
    return result;
  }
  std::vector<float> score_column(std::int64_t k) const {
    std::vector<float> column;
    for (std::int64_t i = 0; i < samples; ++i) column.push_back(scores[i * tasks + k]);
    return column;
  }
  std::vector<float> label_column(std::int64_t k) const {
    std::vector<float> column;
    for (std::int64_t i = 0; i < samples; ++i) {
      column.push_back(labels[i * (tasks + 1) + specs[std::size_t(k)].label_column]);
    }
    return column;
  }
};

std::vector<bool> positives_of(const std::vector<float>& labels) {
  std::vector<bool> positive;
  for (const float label : labels) positive.push_back(label >= 0.5f);
  return positive;
}

// The CUDA twin's method with std::sort in place of CUB: 2U from the positions of the positives
// in both tie orders.
double auc_by_rank_keys(const std::vector<float>& scores, const std::vector<bool>& positive) {
  std::int64_t position_sums[2] = {0, 0};
  std::int64_t positives = 0;
  for (const bool p : positive) positives += p ? 1 : 0;
  for (const std::uint32_t positive_tie_bit : {1u, 0u}) {
    std::vector<std::uint64_t> keys;
    for (std::size_t i = 0; i < scores.size(); ++i) {
      keys.push_back(kernels::rank_keys::rank_key(scores[i], positive[i], positive_tie_bit));
      CHECK(keys.back() < (std::uint64_t(1) << kernels::rank_keys::kRankKeyBits));
    }
    std::sort(keys.begin(), keys.end());
    for (std::size_t j = 0; j < keys.size(); ++j) {
      if ((keys[j] & 1u) == positive_tie_bit) position_sums[positive_tie_bit == 1u ? 0 : 1] += j;
    }
  }
  const std::int64_t twice_u =
      kernels::rank_keys::twice_u_from_position_sums(position_sums[0], position_sums[1], positives);
  return kernels::roc_auc_from_counts(twice_u, positives,
                                      static_cast<std::int64_t>(scores.size()) - positives);
}

}  // namespace

TEST_CASE("evaluation_metrics AUC equals the brute-force pair count for many tasks at once",
          "[metrics][auc]") {
  std::mt19937 random(4242);
  int compared = 0;
  for (int trial = 0; trial < 60; ++trial) {
    const std::int64_t samples = 1 + trial * 37 % 400;
    const std::int64_t tasks = 1 + trial % 5;
    const int distinct = 1 + trial % 13;
    const double rate = 0.05 + 0.9 * double(trial % 10) / 9.0;
    INFO("trial " << trial << ": " << samples << " samples, " << tasks << " tasks, " << distinct
                  << " distinct scores");
    const MetricCase data(random, samples, tasks, distinct, rate);
    std::vector<TaskMetricTotals> results(static_cast<std::size_t>(tasks));
    kernels::evaluation_metrics(Context::cpu(), data.inputs(), data.specs, results);
    for (std::int64_t k = 0; k < tasks; ++k) {
      const std::vector<float> scores = data.score_column(k);
      const std::vector<bool> positive = positives_of(data.label_column(k));
      const double expected = brute_force_auc(scores, positive);
      const TaskMetricTotals& got = results[std::size_t(k)];
      CHECK(got.samples == samples);
      CHECK(got.positives == std::count(positive.begin(), positive.end(), true));
      CHECK(got.nan_samples == 0);
      // The CUDA twin's method on the same data gives the very same bits.
      const double by_rank_keys = auc_by_rank_keys(scores, positive);
      if (std::isnan(expected)) {
        CHECK(std::isnan(got.roc_auc));
        CHECK(std::isnan(by_rank_keys));
        continue;
      }
      CHECK(got.roc_auc == Approx(expected).epsilon(1e-12));
      CHECK(by_rank_keys == got.roc_auc);
      ++compared;
    }
  }
  CHECK(compared > 100);
}

TEST_CASE("evaluation_metrics AUC of one class, batch 1, zeros and known cases", "[metrics][auc]") {
  auto auc_of = [](std::vector<float> scores, std::vector<float> labels) {
    MetricInputs inputs;
    inputs.samples = static_cast<std::int64_t>(scores.size());
    inputs.scores = scores.data();
    inputs.labels = labels.data();
    const std::vector<MetricTaskSpec> specs{{0, 0, true}};
    std::vector<TaskMetricTotals> results(1);
    kernels::evaluation_metrics(Context::cpu(), inputs, specs, results);
    return results[0].roc_auc;
  };
  CHECK(std::isnan(auc_of({0.1f, 0.7f}, {1.f, 1.f})));
  CHECK(std::isnan(auc_of({0.1f, 0.7f}, {0.f, 0.f})));
  CHECK(std::isnan(auc_of({0.3f}, {1.f})));
  CHECK(std::isnan(auc_of({}, {})));
  CHECK(auc_of({0.1f, 0.4f, 0.35f, 0.8f}, {0.f, 0.f, 1.f, 1.f}) == 0.75);
  CHECK(auc_of({0.5f, 0.5f, 0.2f}, {1.f, 0.f, 0.f}) == 0.75);
  // -0 and +0 tie: one pair, a tie.
  CHECK(auc_of({-0.f, 0.f}, {1.f, 0.f}) == 0.5);
  CHECK(auc_by_rank_keys({-0.f, 0.f}, {true, false}) == 0.5);
  // Infinities order like any score.
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(auc_of({-inf, inf, 0.f}, {0.f, 1.f, 1.f}) == 1.0);
  CHECK(auc_by_rank_keys({-inf, inf, 0.f}, {false, true, true}) == 1.0);
  // Perfectly wrong, many negatives below zero.
  CHECK(auc_of({-3.f, -2.f, 5.f, 6.f}, {1.f, 1.f, 0.f, 0.f}) == 0.0);
  CHECK(auc_by_rank_keys({-3.f, -2.f, 5.f, 6.f}, {true, true, false, false}) == 0.0);
}

TEST_CASE("evaluation_metrics sums log-loss and squared error in sample order", "[metrics]") {
  std::mt19937 random(8);
  const MetricCase data(random, 301, 3, 50, 0.4);
  MetricInputs inputs = data.inputs();
  // Scores lie in [-0.5, 0.5]: the negative ones and the zeros exercise the clip.
  inputs.log_loss_clip = 1e-7;
  std::vector<TaskMetricTotals> results(3);
  std::vector<MetricTaskSpec> specs = data.specs;
  specs[1].roc_auc = false;
  kernels::evaluation_metrics(Context::cpu(), inputs, specs, results);
  for (std::int64_t k = 0; k < 3; ++k) {
    const std::vector<float> scores = data.score_column(k);
    const std::vector<float> labels = data.label_column(k);
    double log_loss = 0.0, squared = 0.0;
    for (std::size_t i = 0; i < scores.size(); ++i) {
      const double p = std::clamp(double(scores[i]), 1e-7, 1.0 - 1e-7);
      log_loss -= labels[i] * std::log(p) + (1.0 - labels[i]) * std::log(1.0 - p);
      squared += (double(scores[i]) - labels[i]) * (double(scores[i]) - labels[i]);
    }
    CHECK(results[std::size_t(k)].log_loss_sum == Approx(log_loss).epsilon(1e-13));
    CHECK(results[std::size_t(k)].squared_error_sum == Approx(squared).epsilon(1e-13));
  }
  CHECK(std::isnan(results[1].roc_auc));  // not asked for
  CHECK(!std::isnan(results[0].roc_auc));
}

TEST_CASE("evaluation_metrics refuses NaN for AUC tasks and bad arguments", "[metrics]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> scores{0.1f, nan, 0.3f, 0.4f};  // [2 samples, 2 tasks]
  const std::vector<float> labels{1.f, 0.f};
  MetricInputs inputs;
  inputs.samples = 2;
  inputs.scores = scores.data();
  inputs.score_columns = 2;
  inputs.labels = labels.data();
  inputs.label_columns = 1;
  std::vector<MetricTaskSpec> specs{{0, 0, true}, {1, 0, true}};
  std::vector<TaskMetricTotals> results(2);
  CHECK_THROWS_WITH(kernels::evaluation_metrics(Context::cpu(), inputs, specs, results),
                    Catch::Contains("task 1") && Catch::Contains("1 of 2 samples with a NaN"));
  // The twin itself counts and leaves the AUC NaN.
  kernels::cpu::evaluation_metrics(inputs, specs, results);
  CHECK(results[1].nan_samples == 1);
  CHECK(std::isnan(results[1].roc_auc));
  CHECK(results[0].roc_auc == 0.0);  // the positive 0.1 below the negative 0.3
  // Without an AUC the NaN just flows into the sums.
  specs[1].roc_auc = false;
  kernels::evaluation_metrics(Context::cpu(), inputs, specs, results);
  CHECK(std::isnan(results[1].squared_error_sum));

  specs[1].label_column = 1;
  CHECK_THROWS_WITH(kernels::evaluation_metrics(Context::cpu(), inputs, specs, results),
                    Catch::Contains("label column 1 of 1"));
  specs[1].label_column = 0;
  std::vector<TaskMetricTotals> too_few(1);
  CHECK_THROWS_WITH(kernels::evaluation_metrics(Context::cpu(), inputs, specs, too_few),
                    Catch::Contains("2 task specs but 1 result slots"));
  inputs.samples = -1;
  CHECK_THROWS_WITH(kernels::evaluation_metrics(Context::cpu(), inputs, specs, results),
                    Catch::Contains("negative"));
}
