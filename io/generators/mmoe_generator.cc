// The MMoE paper's correlated two-task generator; see mmoe_generator.h for the exact law.
#include "io/generators/mmoe_generator.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <vector>

#include "io/generators/deterministic_random.h"
#include "io/generators/generator_support.h"

namespace drgrad::io {

namespace {

constexpr const char* kGenerator = "mmoe generator";
constexpr std::uint64_t kParameterStream = 0;
constexpr std::uint64_t kCalibrationStream = 1;  // + task index
constexpr std::uint64_t kFirstSampleStream = 1ULL << 32;
constexpr std::int64_t kCalibrationDraws = 100001;
constexpr int kNumTasks = 2;

struct MmoeTask {
  std::vector<std::vector<double>> weights;      // w1, w2
  std::vector<double> alphas, betas;             // shared by both tasks
  std::vector<std::vector<double>> projections;  // r_j, one per sparse slot
};

void check_options(const MmoeGeneratorOptions& options) {
  require_option(options.num_samples >= 0, kGenerator, "num_samples", ">= 0",
                 std::to_string(options.num_samples));
  require_option(options.correlation >= -1.0 && options.correlation <= 1.0, kGenerator,
                 "correlation", "in [-1, 1]", std::to_string(options.correlation));
  require_option(options.input_dim >= 2, kGenerator, "input_dim", ">= 2",
                 std::to_string(options.input_dim));
  require_option(options.weight_scale > 0.0, kGenerator, "weight_scale", "> 0",
                 std::to_string(options.weight_scale));
  require_option(options.num_sinusoids >= 0, kGenerator, "num_sinusoids", ">= 0",
                 std::to_string(options.num_sinusoids));
  require_option(options.noise_variance >= 0.0, kGenerator, "noise_variance", ">= 0",
                 std::to_string(options.noise_variance));
  require_option(options.sparse_slots >= 0, kGenerator, "sparse_slots", ">= 0",
                 std::to_string(options.sparse_slots));
  require_option(options.sparse_slots == 0 || options.sparse_vocabulary >= 1, kGenerator,
                 "sparse_vocabulary", ">= 1", std::to_string(options.sparse_vocabulary));
}

MmoeTask draw_task(const MmoeGeneratorOptions& options) {
  DeterministicRandom random(derive_seed(options.seed, kParameterStream));
  const std::int64_t d = options.input_dim;
  const std::vector<double> u1 = random_unit_vector(random, d);
  // u2: a second Gaussian direction with its u1 component removed.
  std::vector<double> u2;
  double norm = 0.0;
  while (norm < 1e-6) {
    u2 = random_unit_vector(random, d);
    const double along_u1 = dot(u2, u1);
    for (std::int64_t i = 0; i < d; ++i) u2[i] -= along_u1 * u1[i];
    norm = euclidean_norm(u2);
  }
  for (double& value : u2) value /= norm;

  MmoeTask task;
  const double c = options.weight_scale;
  const double p = options.correlation;
  const double orthogonal_part = std::sqrt(std::max(0.0, 1.0 - p * p));
  task.weights.assign(kNumTasks, std::vector<double>(d));
  for (std::int64_t i = 0; i < d; ++i) {
    task.weights[0][i] = c * u1[i];
    task.weights[1][i] = c * (p * u1[i] + orthogonal_part * u2[i]);
  }
  for (std::int64_t i = 0; i < options.num_sinusoids; ++i) {
    task.alphas.push_back(random.normal());
    task.betas.push_back(random.normal());
  }
  for (std::int64_t j = 0; j < options.sparse_slots; ++j) {
    const double angle = 2.0 * std::numbers::pi * random.uniform();
    const std::vector<double> free_direction = random_unit_vector(random, d);
    std::vector<double> projection(d);
    for (std::int64_t i = 0; i < d; ++i) {
      projection[i] = std::cos(angle) * u1[i] + std::sin(angle) * u2[i] + free_direction[i];
    }
    const double projection_norm = euclidean_norm(projection);
    for (double& value : projection) value /= projection_norm;
    task.projections.push_back(std::move(projection));
  }
  return task;
}

// y = z + sum_i sin(alpha_i z + beta_i) + eps for the task's projection z = w_k . x.
double task_target(const MmoeTask& task, double z, double eps) {
  double y = z + eps;
  for (std::size_t i = 0; i < task.alphas.size(); ++i) {
    y += std::sin(task.alphas[i] * z + task.betas[i]);
  }
  return y;
}

double median_threshold(const MmoeGeneratorOptions& options, const MmoeTask& task, int k) {
  DeterministicRandom random(derive_seed(options.seed, kCalibrationStream + k));
  const double noise_stddev = std::sqrt(options.noise_variance);
  std::vector<double> targets(kCalibrationDraws);
  for (double& target : targets) {
    const double z = options.weight_scale * random.normal();
    target = task_target(task, z, noise_stddev * random.normal());
  }
  return median_of(std::move(targets));
}

}  // namespace

GeneratedData generate_mmoe(const MmoeGeneratorOptions& options) {
  check_options(options);
  const MmoeTask task = draw_task(options);
  const std::int64_t d = options.input_dim;
  const std::int64_t n = options.num_samples;

  GeneratedData data;
  for (std::int64_t i = 0; i < d; ++i) data.schema.dense_features.push_back(indexed_name("x", i));
  for (std::int64_t j = 0; j < options.sparse_slots; ++j) {
    data.schema.sparse_slots.push_back({indexed_name("s", j), options.sparse_vocabulary});
  }
  data.schema.labels = {"y1", "y2"};

  double thresholds[kNumTasks] = {0.0, 0.0};
  if (options.binary_labels) {
    for (int k = 0; k < kNumTasks; ++k) thresholds[k] = median_threshold(options, task, k);
  }

  Batch& batch = data.batch;
  batch = Batch::empty_for(data.schema);
  batch.size = n;
  batch.dense.resize(static_cast<std::size_t>(n * d));
  batch.labels.resize(static_cast<std::size_t>(n * kNumTasks));
  for (auto& column : batch.sparse) {
    column.ids.reserve(static_cast<std::size_t>(n));
    column.offsets.reserve(static_cast<std::size_t>(n + 1));
  }

  DeterministicRandom random(derive_seed(options.seed, kFirstSampleStream + options.sample_stream));
  const double noise_stddev = std::sqrt(options.noise_variance);
  std::vector<double> x(d);
  for (std::int64_t row = 0; row < n; ++row) {
    for (std::int64_t i = 0; i < d; ++i) {
      x[i] = random.normal();
      batch.dense[row * d + i] = static_cast<float>(x[i]);
    }
    for (int k = 0; k < kNumTasks; ++k) {
      const double y = task_target(task, dot(task.weights[k], x), noise_stddev * random.normal());
      const double label = options.binary_labels ? (y > thresholds[k] ? 1.0 : 0.0) : y;
      batch.labels[row * kNumTasks + k] = static_cast<float>(label);
    }
    for (std::int64_t j = 0; j < options.sparse_slots; ++j) {
      auto& column = batch.sparse[j];
      column.ids.push_back(
          normal_quantile_bucket(dot(task.projections[j], x), options.sparse_vocabulary));
      column.offsets.push_back(static_cast<std::int64_t>(column.ids.size()));
    }
  }
  return data;
}

}  // namespace drgrad::io
