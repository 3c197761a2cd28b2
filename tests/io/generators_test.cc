// Tests of the synthetic data generators: determinism, shapes, label balance, and that the
// task relationship the options promise (correlation p, cos theta) shows up in the data.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <vector>

#include "io/generators/deterministic_random.h"
#include "io/generators/drgrad_synthetic_generator.h"
#include "io/generators/mmoe_generator.h"

using namespace drgrad::io;

namespace {

std::vector<double> label_column(const GeneratedData& data, std::size_t label) {
  const std::size_t num_labels = data.schema.num_labels();
  std::vector<double> column;
  for (std::int64_t row = 0; row < data.batch.size; ++row) {
    column.push_back(data.batch.labels[row * num_labels + label]);
  }
  return column;
}

std::vector<double> id_column(const GeneratedData& data, std::size_t slot) {
  return std::vector<double>(data.batch.sparse[slot].ids.begin(),
                             data.batch.sparse[slot].ids.end());
}

double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  const double n = static_cast<double>(a.size());
  double mean_a = 0, mean_b = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    mean_a += a[i] / n;
    mean_b += b[i] / n;
  }
  double cov = 0, var_a = 0, var_b = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    cov += (a[i] - mean_a) * (b[i] - mean_b);
    var_a += (a[i] - mean_a) * (a[i] - mean_a);
    var_b += (b[i] - mean_b) * (b[i] - mean_b);
  }
  return cov / std::sqrt(var_a * var_b);
}

double positive_fraction(const std::vector<double>& labels) {
  double positives = 0;
  for (const double label : labels) {
    REQUIRE((label == 0.0 || label == 1.0));
    positives += label;
  }
  return positives / static_cast<double>(labels.size());
}

bool same_batch(const Batch& a, const Batch& b) {
  if (a.size != b.size || a.dense != b.dense || a.labels != b.labels) return false;
  if (a.sparse.size() != b.sparse.size()) return false;
  for (std::size_t s = 0; s < a.sparse.size(); ++s) {
    if (a.sparse[s].ids != b.sparse[s].ids || a.sparse[s].offsets != b.sparse[s].offsets) {
      return false;
    }
  }
  return true;
}

// Every sample holds exactly one id in [0, vocabulary).
void require_one_id_per_sample(const SparseColumn& column, std::int64_t size,
                               std::int64_t vocabulary) {
  REQUIRE(column.ids.size() == static_cast<std::size_t>(size));
  for (std::int64_t i = 0; i <= size; ++i) REQUIRE(column.offsets[i] == i);
  for (const std::int64_t id : column.ids) {
    REQUIRE(id >= 0);
    REQUIRE(id < vocabulary);
  }
}

}  // namespace

TEST_CASE("DeterministicRandom repeats its sequence and has the right moments", "[generators]") {
  DeterministicRandom first(42), second(42), other(43);
  bool differs_from_other_seed = false;
  for (int i = 0; i < 100; ++i) {
    const double value = first.normal();
    REQUIRE(value == second.normal());
    if (value != other.normal()) differs_from_other_seed = true;
  }
  REQUIRE(differs_from_other_seed);

  DeterministicRandom random(7);
  const int draws = 200000;
  double sum = 0, sum_squares = 0, uniform_sum = 0;
  for (int i = 0; i < draws; ++i) {
    const double z = random.normal();
    sum += z;
    sum_squares += z * z;
    const double u = random.uniform();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    uniform_sum += u;
  }
  // Standard errors: mean 1/sqrt(n) ~ 0.0022, variance sqrt(2/n) ~ 0.0032, uniform mean 0.00065.
  CHECK(std::abs(sum / draws) < 0.01);
  CHECK(std::abs(sum_squares / draws - 1.0) < 0.015);
  CHECK(std::abs(uniform_sum / draws - 0.5) < 0.003);
}

TEST_CASE("normal_quantile_bucket covers the vocabulary evenly", "[generators]") {
  const double infinity = std::numeric_limits<double>::infinity();
  REQUIRE(normal_quantile_bucket(-infinity, 10) == 0);
  REQUIRE(normal_quantile_bucket(infinity, 10) == 9);
  REQUIRE(normal_quantile_bucket(0.0, 10) == 5);
  REQUIRE(normal_quantile_bucket(-0.1, 10) == 4);
  std::vector<int> counts(10, 0);
  DeterministicRandom random(3);
  for (int i = 0; i < 100000; ++i) ++counts[normal_quantile_bucket(random.normal(), 10)];
  for (const int count : counts) CHECK(std::abs(count - 10000) < 500);
}

TEST_CASE("mmoe generator: schema and shapes", "[generators]") {
  MmoeGeneratorOptions options;
  options.num_samples = 300;
  options.input_dim = 12;
  options.sparse_slots = 3;
  options.sparse_vocabulary = 17;
  const GeneratedData data = generate_mmoe(options);
  REQUIRE_NOTHROW(data.batch.validate(data.schema));
  REQUIRE(data.batch.size == 300);
  REQUIRE(data.schema.num_dense() == 12);
  REQUIRE(data.schema.dense_features.front() == "x0");
  REQUIRE(data.schema.dense_features.back() == "x11");
  REQUIRE(data.schema.labels == std::vector<std::string>{"y1", "y2"});
  REQUIRE(data.schema.num_sparse() == 3);
  for (std::size_t s = 0; s < 3; ++s) {
    REQUIRE(data.schema.sparse_slots[s].name == std::string("s").append(std::to_string(s)));
    REQUIRE(data.schema.sparse_slots[s].vocabulary_size == 17);
    require_one_id_per_sample(data.batch.sparse[s], 300, 17);
  }

  options.sparse_slots = 0;
  const GeneratedData dense_only = generate_mmoe(options);
  REQUIRE_NOTHROW(dense_only.batch.validate(dense_only.schema));
  REQUIRE(dense_only.schema.num_sparse() == 0);
}

TEST_CASE("mmoe generator is deterministic and prefix-stable", "[generators]") {
  MmoeGeneratorOptions options;
  options.num_samples = 500;
  options.sparse_slots = 2;
  const GeneratedData first = generate_mmoe(options);
  const GeneratedData again = generate_mmoe(options);
  REQUIRE(same_batch(first.batch, again.batch));
  REQUIRE(first.schema.fingerprint() == again.schema.fingerprint());

  MmoeGeneratorOptions shorter = options;
  shorter.num_samples = 100;
  const GeneratedData prefix = generate_mmoe(shorter);
  std::vector<std::int64_t> rows(100);
  for (std::int64_t i = 0; i < 100; ++i) rows[i] = i;
  REQUIRE(same_batch(prefix.batch, gather_rows(first.batch, rows)));

  MmoeGeneratorOptions other_seed = options;
  other_seed.seed = 2;
  REQUIRE_FALSE(same_batch(first.batch, generate_mmoe(other_seed).batch));
  MmoeGeneratorOptions other_stream = options;
  other_stream.sample_stream = 1;
  REQUIRE_FALSE(same_batch(first.batch, generate_mmoe(other_stream).batch));
}

TEST_CASE("mmoe generator: without sinusoids the target correlation is p", "[generators]") {
  // y_k = w_k . x + eps_k with |w_k| = 1 and var(eps) = 0.01: corr(y1, y2) = p / 1.01.
  MmoeGeneratorOptions options;
  options.num_samples = 20000;
  options.num_sinusoids = 0;
  options.binary_labels = false;
  for (const double p : {-1.0, -0.5, 0.0, 0.5, 1.0}) {
    options.correlation = p;
    const GeneratedData data = generate_mmoe(options);
    const double correlation = pearson(label_column(data, 0), label_column(data, 1));
    INFO("p " << p << " corr " << correlation);
    CHECK(std::abs(correlation - p / 1.01) < 0.03);
  }
}

TEST_CASE("mmoe generator: with sinusoids the target correlation grows with p", "[generators]") {
  // With g(z) = z + sum sin(alpha z + beta), corr(g(z1), g(z2)) for corr(z1, z2) = p is, by
  // Mehler's expansion, a power series in p with non-negative coefficients over their sum: 0 at
  // p = 0, increasing on [0, 1], and below its value at |p| for negative p. (For negative p the
  // sign depends on the drawn sinusoids, so it is not checked here.)
  for (const std::uint64_t seed : {1ULL, 2ULL, 3ULL}) {
    MmoeGeneratorOptions options;
    options.num_samples = 20000;
    options.seed = seed;
    options.binary_labels = false;
    std::vector<double> correlations;
    for (const double p : {-0.5, 0.0, 0.5, 1.0}) {
      options.correlation = p;
      const GeneratedData data = generate_mmoe(options);
      correlations.push_back(pearson(label_column(data, 0), label_column(data, 1)));
    }
    INFO("seed " << seed << ": corr at p=-0.5, 0, 0.5, 1: " << correlations[0] << ", "
                 << correlations[1] << ", " << correlations[2] << ", " << correlations[3]);
    CHECK(std::abs(correlations[1]) < 0.03);
    CHECK(correlations[1] < correlations[2] - 0.05);
    CHECK(correlations[2] < correlations[3]);
    CHECK(correlations[3] > 0.9);
    CHECK(correlations[0] < correlations[2]);
  }
}

TEST_CASE("mmoe generator: binary labels are balanced across train and eval streams",
          "[generators]") {
  MmoeGeneratorOptions options;
  options.num_samples = 20000;
  for (const std::uint64_t stream : {0ULL, 1ULL}) {
    options.sample_stream = stream;
    const GeneratedData data = generate_mmoe(options);
    for (std::size_t k = 0; k < 2; ++k) {
      const double fraction = positive_fraction(label_column(data, k));
      INFO("stream " << stream << " task " << k << " positive fraction " << fraction);
      CHECK(std::abs(fraction - 0.5) < 0.02);
    }
  }
}

TEST_CASE("mmoe generator: sparse ids are uniform and carry label signal", "[generators]") {
  MmoeGeneratorOptions options;
  options.num_samples = 20000;
  options.binary_labels = false;
  options.sparse_slots = 4;
  options.sparse_vocabulary = 20;
  const GeneratedData data = generate_mmoe(options);
  for (std::size_t slot = 0; slot < 4; ++slot) {
    std::vector<int> counts(20, 0);
    for (const std::int64_t id : data.batch.sparse[slot].ids) ++counts[id];
    for (const int count : counts) CHECK(std::abs(count - 1000) < 150);
    const std::vector<double> ids = id_column(data, slot);
    const double strongest = std::max(std::abs(pearson(ids, label_column(data, 0))),
                                      std::abs(pearson(ids, label_column(data, 1))));
    INFO("slot " << slot << " strongest |corr(id, y)| " << strongest);
    CHECK(strongest > 0.2);
  }
}

TEST_CASE("mmoe generator rejects out-of-range options, naming them", "[generators]") {
  MmoeGeneratorOptions options;
  options.num_samples = 10;
  options.correlation = 1.5;
  REQUIRE_THROWS_WITH(generate_mmoe(options), Catch::Contains("correlation"));
  options.correlation = 0.0;
  options.input_dim = 1;
  REQUIRE_THROWS_WITH(generate_mmoe(options), Catch::Contains("input_dim"));
  options.input_dim = 4;
  options.sparse_slots = 1;
  options.sparse_vocabulary = 0;
  REQUIRE_THROWS_AS(generate_mmoe(options), std::invalid_argument);
}

TEST_CASE("drgrad synthetic generator: schema, shapes and determinism", "[generators]") {
  DrgradGeneratorOptions options;
  options.num_samples = 400;
  const GeneratedData data = generate_drgrad_synthetic(options);
  REQUIRE_NOTHROW(data.batch.validate(data.schema));
  REQUIRE(data.schema.num_dense() == 26);
  REQUIRE(data.schema.num_sparse() == 6);
  REQUIRE(data.schema.dense_features.back() == "x25");
  REQUIRE(data.schema.sparse_slots.front().name == "x26");
  REQUIRE(data.schema.sparse_slots.back().name == "x31");
  REQUIRE(data.schema.labels == std::vector<std::string>{"label1", "label2"});
  for (std::size_t s = 0; s < 6; ++s) {
    REQUIRE(data.schema.sparse_slots[s].vocabulary_size == 100);
    require_one_id_per_sample(data.batch.sparse[s], 400, 100);
  }

  REQUIRE(same_batch(data.batch, generate_drgrad_synthetic(options).batch));
  DrgradGeneratorOptions other = options;
  other.seed = 9;
  REQUIRE_FALSE(same_batch(data.batch, generate_drgrad_synthetic(other).batch));
  other = options;
  other.sample_stream = 1;
  REQUIRE_FALSE(same_batch(data.batch, generate_drgrad_synthetic(other).batch));
}

TEST_CASE("drgrad synthetic generator: cos theta sets cooperation or conflict", "[generators]") {
  DrgradGeneratorOptions options;
  options.num_samples = 10000;
  options.binary_labels = false;
  options.cos_theta = 0.6;
  GeneratedData data = generate_drgrad_synthetic(options);
  CHECK(pearson(label_column(data, 0), label_column(data, 1)) > 0.9);
  options.cos_theta = -0.6;
  data = generate_drgrad_synthetic(options);
  CHECK(pearson(label_column(data, 0), label_column(data, 1)) < -0.9);

  // Binary: balanced labels; cooperating tasks agree, conflicting ones disagree.
  options.binary_labels = true;
  for (const double cos_theta : {0.6, -0.6}) {
    options.cos_theta = cos_theta;
    data = generate_drgrad_synthetic(options);
    const std::vector<double> first = label_column(data, 0), second = label_column(data, 1);
    CHECK(std::abs(positive_fraction(first) - 0.5) < 0.03);
    CHECK(std::abs(positive_fraction(second) - 0.5) < 0.03);
    double agreements = 0;
    for (std::size_t i = 0; i < first.size(); ++i) agreements += first[i] == second[i];
    const double agreement = agreements / static_cast<double>(first.size());
    INFO("cos theta " << cos_theta << " agreement " << agreement);
    CHECK((cos_theta > 0 ? agreement > 0.9 : agreement < 0.1));
  }
}

TEST_CASE("drgrad synthetic generator: sparse buckets carry label signal", "[generators]") {
  DrgradGeneratorOptions options;
  options.num_samples = 20000;
  options.binary_labels = false;
  options.num_sparse = 32;  // every feature sparse: the labels must depend on the buckets
  const GeneratedData data = generate_drgrad_synthetic(options);
  REQUIRE(data.schema.num_dense() == 0);
  REQUIRE_NOTHROW(data.batch.validate(data.schema));
  // label1 is dominated by 6 v_i sin(x_i): a slot's bucket mean of label1 varies with the id.
  double strongest = 0;
  for (std::size_t slot = 0; slot < 32; ++slot) {
    std::vector<double> sum(100, 0.0), count(100, 0.0);
    const std::vector<double> labels = label_column(data, 0);
    for (std::int64_t row = 0; row < data.batch.size; ++row) {
      sum[data.batch.sparse[slot].ids[row]] += labels[row];
      count[data.batch.sparse[slot].ids[row]] += 1;
    }
    const double low = sum[10] / count[10], high = sum[90] / count[90];
    strongest = std::max(strongest, std::abs(high - low));
  }
  CHECK(strongest > 1.0);
}

TEST_CASE("drgrad synthetic generator rejects out-of-range options", "[generators]") {
  DrgradGeneratorOptions options;
  options.num_samples = 10;
  options.cos_theta = -1.5;
  REQUIRE_THROWS_WITH(generate_drgrad_synthetic(options), Catch::Contains("cos_theta"));
  options.cos_theta = 0.5;
  options.num_sparse = 40;
  REQUIRE_THROWS_WITH(generate_drgrad_synthetic(options), Catch::Contains("num_sparse"));
}
