// Metrics: AUC against a brute-force pair count on tie-heavy random data and on known cases,
// log-loss and MSE on values worked out by hand, and the accumulator (strided adds, merging).
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "engine/metrics/metrics.h"

namespace {

namespace engine = drgrad::engine;

// The definition itself: over all (positive, negative) pairs, 1 when the positive scores higher,
// 1/2 on a tie. O(P * N).
double brute_force_auc(const std::vector<float>& scores, const std::vector<float>& labels) {
  double wins = 0.0, pairs = 0.0;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    if (labels[i] < 0.5f) continue;
    for (std::size_t j = 0; j < scores.size(); ++j) {
      if (labels[j] >= 0.5f) continue;
      pairs += 1.0;
      if (scores[i] > scores[j]) wins += 1.0;
      if (scores[i] == scores[j]) wins += 0.5;
    }
  }
  return wins / pairs;
}

struct Samples {
  std::vector<float> scores, labels;
};

// Scores from only `distinct_scores` values, so ties are everywhere.
Samples random_samples(std::mt19937& random, std::size_t n, int distinct_scores,
                       double positive_rate) {
  std::uniform_int_distribution<int> score(0, distinct_scores - 1);
  std::bernoulli_distribution positive(positive_rate);
  Samples samples;
  for (std::size_t i = 0; i < n; ++i) {
    samples.scores.push_back(float(score(random)) / float(distinct_scores));
    samples.labels.push_back(positive(random) ? 1.f : 0.f);
  }
  return samples;
}

}  // namespace

TEST_CASE("AUC equals the brute-force pair count on tie-heavy random data", "[metrics]") {
  std::mt19937 random(2024);
  int compared = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const std::size_t n = 2 + std::size_t(trial * 7 % 300);
    const int distinct = 1 + trial % 12;
    const double rate = 0.05 + 0.9 * double(trial % 10) / 9.0;
    const Samples samples = random_samples(random, n, distinct, rate);
    const double expected = brute_force_auc(samples.scores, samples.labels);
    const double got = engine::auc(samples.scores, samples.labels);
    if (std::isnan(expected)) {  // one class absent in this draw
      CHECK(std::isnan(got));
      continue;
    }
    CHECK(got == Approx(expected).epsilon(1e-12));
    ++compared;
  }
  CHECK(compared > 150);
}

TEST_CASE("AUC of perfect, inverse, constant and hand-worked scores", "[metrics]") {
  const std::vector<float> labels{0.f, 1.f, 0.f, 1.f, 1.f, 0.f};
  const std::vector<float> perfect{0.1f, 0.9f, 0.2f, 0.8f, 0.7f, 0.3f};
  const std::vector<float> inverse{0.9f, 0.1f, 0.8f, 0.2f, 0.3f, 0.7f};
  const std::vector<float> constant(6, 0.42f);
  CHECK(engine::auc(perfect, labels) == 1.0);
  CHECK(engine::auc(inverse, labels) == 0.0);
  CHECK(engine::auc(constant, labels) == 0.5);

  // Negatives 0.1, 0.4; positives 0.35, 0.8: of the 4 pairs, 0.35 beats 0.1 only and 0.8 beats
  // both, so 3/4.
  CHECK(engine::auc(std::vector<float>{0.1f, 0.4f, 0.35f, 0.8f},
                    std::vector<float>{0.f, 0.f, 1.f, 1.f}) == 0.75);
  // One tie between a positive and a negative at 0.5 and a clean win: (1 + 1/2) / 2.
  CHECK(engine::auc(std::vector<float>{0.5f, 0.5f, 0.2f}, std::vector<float>{1.f, 0.f, 0.f}) ==
        0.75);
}

TEST_CASE("AUC is NaN without both classes and refuses NaN scores", "[metrics]") {
  CHECK(std::isnan(engine::auc(std::vector<float>{0.1f, 0.7f}, std::vector<float>{1.f, 1.f})));
  CHECK(std::isnan(engine::auc(std::vector<float>{0.1f, 0.7f}, std::vector<float>{0.f, 0.f})));
  CHECK(std::isnan(engine::auc(std::vector<float>{}, std::vector<float>{})));
  CHECK_THROWS_WITH(
      engine::auc(std::vector<float>{0.1f, std::nanf("")}, std::vector<float>{1.f, 0.f}),
      Catch::Contains("sample 1") && Catch::Contains("NaN score"));
  CHECK_THROWS_WITH(engine::auc(std::vector<float>{0.1f}, std::vector<float>{1.f, 0.f}),
                    Catch::Contains("1 scores but 2 labels"));
}

TEST_CASE("log-loss of known values, with clipping at 1e-7", "[metrics]") {
  // p = 1/2 costs log 2 whatever the label.
  CHECK(engine::log_loss(std::vector<float>{0.5f, 0.5f}, std::vector<float>{1.f, 0.f}) ==
        Approx(std::log(2.0)).epsilon(1e-15));
  // (-log 0.9 - log(1 - 0.2)) / 2, using the float values actually stored.
  CHECK(engine::log_loss(std::vector<float>{0.9f, 0.2f}, std::vector<float>{1.f, 0.f}) ==
        Approx((-std::log(double(0.9f)) - std::log(1.0 - double(0.2f))) / 2).epsilon(1e-15));
  // Soft label 0.25 at p = 0.5 is still log 2.
  CHECK(engine::log_loss(std::vector<float>{0.5f}, std::vector<float>{0.25f}) ==
        Approx(std::log(2.0)).epsilon(1e-15));
  // Certain and wrong: clipped to -log(1e-7) ~ 16.118, not infinity.
  CHECK(engine::log_loss(std::vector<float>{0.f}, std::vector<float>{1.f}) ==
        Approx(-std::log(1e-7)).epsilon(1e-12));
  CHECK(engine::log_loss(std::vector<float>{1.f}, std::vector<float>{0.f}) ==
        Approx(-std::log(1e-7)).epsilon(1e-9));
  // Certain and right: -log(1 - 1e-7) ~ 1e-7.
  CHECK(engine::log_loss(std::vector<float>{1.f}, std::vector<float>{1.f}) ==
        Approx(1e-7).epsilon(1e-6));
  CHECK(std::isnan(engine::log_loss(std::vector<float>{}, std::vector<float>{})));
}

TEST_CASE("mean squared error of known values", "[metrics]") {
  // ((1 - 1)^2 + (2 - 0)^2 + (3 - 6)^2) / 3 = 13 / 3.
  CHECK(engine::mean_squared_error(std::vector<float>{1.f, 2.f, 3.f},
                                   std::vector<float>{1.f, 0.f, 6.f}) ==
        Approx(13.0 / 3.0).epsilon(1e-15));
  CHECK(engine::mean_squared_error(std::vector<float>{-0.5f}, std::vector<float>{-0.5f}) == 0.0);
  CHECK(std::isnan(engine::mean_squared_error(std::vector<float>{}, std::vector<float>{})));
  CHECK_THROWS_AS(engine::mean_squared_error(std::vector<float>{1.f}, std::vector<float>{}),
                  std::invalid_argument);
}

TEST_CASE("merged accumulators equal one accumulator that saw every batch", "[metrics]") {
  std::mt19937 random(99);
  engine::TaskMetricAccumulator everything;
  std::vector<engine::TaskMetricAccumulator> ranks(3);
  for (int batch = 0; batch < 12; ++batch) {
    const Samples samples = random_samples(random, 1 + std::size_t(batch * 13 % 40), 20, 0.3);
    everything.add(samples.scores, samples.labels);
    ranks[std::size_t(batch) / 4].add(samples.scores, samples.labels);  // batches in order
  }
  engine::TaskMetricAccumulator merged;
  for (const auto& rank : ranks) merged.merge(rank);
  REQUIRE(merged.size() == everything.size());

  // Same samples in the same order: identical results, bit for bit.
  const engine::TaskMetrics expected = everything.compute();
  const engine::TaskMetrics got = merged.compute();
  CHECK(got.samples == expected.samples);
  CHECK(got.positives == expected.positives);
  CHECK(got.auc == expected.auc);
  CHECK(got.log_loss == expected.log_loss);
  CHECK(got.mean_squared_error == expected.mean_squared_error);
  CHECK(expected.auc ==
        Approx(brute_force_auc(
                   std::vector<float>(everything.scores().begin(), everything.scores().end()),
                   std::vector<float>(everything.labels().begin(), everything.labels().end())))
            .epsilon(1e-12));

  // Merged in another order: AUC is exactly the same, the sums agree to rounding.
  engine::TaskMetricAccumulator reversed;
  for (auto rank = ranks.rbegin(); rank != ranks.rend(); ++rank) reversed.merge(*rank);
  CHECK(reversed.auc() == expected.auc);
  CHECK(reversed.log_loss() == Approx(expected.log_loss).epsilon(1e-12));
  CHECK(reversed.mean_squared_error() == Approx(expected.mean_squared_error).epsilon(1e-12));

  // Merging into itself doubles every sample: AUC and the means are unchanged.
  engine::TaskMetricAccumulator doubled = everything;
  doubled.merge(doubled);
  CHECK(doubled.size() == 2 * everything.size());
  CHECK(doubled.auc() == Approx(expected.auc).epsilon(1e-12));
  CHECK(doubled.log_loss() == Approx(expected.log_loss).epsilon(1e-12));

  doubled.clear();
  CHECK(doubled.size() == 0);
  CHECK(std::isnan(doubled.auc()));
}

TEST_CASE("the accumulator reads one task column of a batch-major matrix", "[metrics]") {
  // [batch = 4, tasks = 2]: task 1's scores are 0.9, 0.1, 0.6, 0.4 with labels 1, 0, 0, 1.
  const std::vector<float> scores{0.f, 0.9f, 0.f, 0.1f, 0.f, 0.6f, 0.f, 0.4f};
  const std::vector<float> labels{9.f, 1.f, 9.f, 0.f, 9.f, 0.f, 9.f, 1.f};
  engine::TaskMetricAccumulator task;
  task.add_strided(scores.data() + 1, 2, labels.data() + 1, 2, 4);
  CHECK(task.size() == 4);
  CHECK(std::vector<float>(task.scores().begin(), task.scores().end()) ==
        std::vector<float>{0.9f, 0.1f, 0.6f, 0.4f});
  // Positives 0.9, 0.4 against negatives 0.1, 0.6: 0.9 wins both, 0.4 wins one: 3/4.
  CHECK(task.auc() == 0.75);
  CHECK(task.compute().positives == 2);
  CHECK_THROWS_AS(task.add_strided(scores.data(), 0, labels.data(), 1, 1), std::invalid_argument);
  CHECK_THROWS_AS(task.add(std::vector<float>{1.f}, std::vector<float>{}), std::invalid_argument);
}
