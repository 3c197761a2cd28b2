// The DRGrad paper's synthetic generator; drgrad_synthetic_generator.h documents the choices the
// paper leaves open (scalar reduction, binarisation, which features are sparse).
#include "io/generators/drgrad_synthetic_generator.h"

#include <cmath>
#include <string>
#include <vector>

#include "io/generators/deterministic_random.h"
#include "io/generators/generator_support.h"

namespace drgrad::io {

namespace {

constexpr const char* kGenerator = "drgrad_synthetic generator";
constexpr std::uint64_t kParameterStream = 0;
constexpr std::uint64_t kCalibrationStream = 1;
constexpr std::uint64_t kFirstSampleStream = 1ULL << 32;
constexpr std::int64_t kCalibrationDraws = 100001;

void check_options(const DrgradGeneratorOptions& options) {
  require_option(options.num_samples >= 0, kGenerator, "num_samples", ">= 0",
                 std::to_string(options.num_samples));
  require_option(options.cos_theta >= -1.0 && options.cos_theta <= 1.0, kGenerator, "cos_theta",
                 "in [-1, 1]", std::to_string(options.cos_theta));
  require_option(options.num_features >= 1, kGenerator, "num_features", ">= 1",
                 std::to_string(options.num_features));
  require_option(options.num_sparse >= 0 && options.num_sparse <= options.num_features, kGenerator,
                 "num_sparse", "in [0, num_features]", std::to_string(options.num_sparse));
  require_option(options.num_sparse == 0 || options.sparse_vocabulary >= 1, kGenerator,
                 "sparse_vocabulary", ">= 1", std::to_string(options.sparse_vocabulary));
  require_option(options.noise_variance >= 0.0, kGenerator, "noise_variance", ">= 0",
                 std::to_string(options.noise_variance));
}

// Draws one sample's features into x and returns its two labels before binarisation.
struct Labels {
  double first, second;
};
Labels draw_sample(const DrgradGeneratorOptions& options, const std::vector<double>& direction,
                   DeterministicRandom& random, std::vector<double>& x) {
  for (double& value : x) value = random.normal();
  double squares_norm = 0.0, x_norm = 0.0;
  for (const double value : x) {
    squares_norm += value * value * value * value;
    x_norm += value * value;
  }
  squares_norm = std::sqrt(squares_norm);
  x_norm = std::sqrt(x_norm);
  double projected = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    // Zero norms only for x = 0 (probability zero); the terms are then taken as 0 and exp(0).
    const double square_term = squares_norm > 0.0 ? x[i] * x[i] / squares_norm : 0.0;
    const double exp_term = std::exp(x_norm > 0.0 ? x[i] / x_norm : 0.0);
    projected += direction[i] * (4.0 * square_term + 5.0 * exp_term + 6.0 * std::sin(x[i]));
  }
  const double noise_stddev = std::sqrt(options.noise_variance);
  const double first = 10.0 * (projected + random.normal(options.noise_mean, noise_stddev));
  const double second = options.cos_theta * first + random.normal(options.noise_mean, noise_stddev);
  return {first, second};
}

}  // namespace

GeneratedData generate_drgrad_synthetic(const DrgradGeneratorOptions& options) {
  check_options(options);
  const std::int64_t num_features = options.num_features;
  const std::int64_t num_dense = num_features - options.num_sparse;
  const std::int64_t n = options.num_samples;

  DeterministicRandom parameter_random(derive_seed(options.seed, kParameterStream));
  const std::vector<double> direction = random_unit_vector(parameter_random, num_features);

  GeneratedData data;
  for (std::int64_t i = 0; i < num_dense; ++i) {
    data.schema.dense_features.push_back(indexed_name("x", i));
  }
  for (std::int64_t i = num_dense; i < num_features; ++i) {
    data.schema.sparse_slots.push_back({indexed_name("x", i), options.sparse_vocabulary});
  }
  data.schema.labels = {"label1", "label2"};

  std::vector<double> x(num_features);
  double thresholds[2] = {0.0, 0.0};
  if (options.binary_labels) {
    DeterministicRandom calibration(derive_seed(options.seed, kCalibrationStream));
    std::vector<double> firsts(kCalibrationDraws), seconds(kCalibrationDraws);
    for (std::int64_t i = 0; i < kCalibrationDraws; ++i) {
      const Labels labels = draw_sample(options, direction, calibration, x);
      firsts[i] = labels.first;
      seconds[i] = labels.second;
    }
    thresholds[0] = median_of(std::move(firsts));
    thresholds[1] = median_of(std::move(seconds));
  }

  Batch& batch = data.batch;
  batch = Batch::empty_for(data.schema);
  batch.size = n;
  batch.dense.resize(static_cast<std::size_t>(n * num_dense));
  batch.labels.resize(static_cast<std::size_t>(n * 2));
  for (auto& column : batch.sparse) {
    column.ids.reserve(static_cast<std::size_t>(n));
    column.offsets.reserve(static_cast<std::size_t>(n + 1));
  }

  DeterministicRandom random(derive_seed(options.seed, kFirstSampleStream + options.sample_stream));
  for (std::int64_t row = 0; row < n; ++row) {
    const Labels labels = draw_sample(options, direction, random, x);
    for (std::int64_t i = 0; i < num_dense; ++i) {
      batch.dense[row * num_dense + i] = static_cast<float>(x[i]);
    }
    for (std::int64_t j = 0; j < options.num_sparse; ++j) {
      auto& column = batch.sparse[j];
      column.ids.push_back(normal_quantile_bucket(x[num_dense + j], options.sparse_vocabulary));
      column.offsets.push_back(static_cast<std::int64_t>(column.ids.size()));
    }
    const double values[2] = {labels.first, labels.second};
    for (int k = 0; k < 2; ++k) {
      batch.labels[row * 2 + k] = static_cast<float>(
          options.binary_labels ? (values[k] > thresholds[k] ? 1.0 : 0.0) : values[k]);
    }
  }
  return data;
}

}  // namespace drgrad::io
