// GPU tests of kernels/embedding/embedding_plan.h and the backward variants that read it: the
// CUB-built plan equals the CPU twin's entry for entry, the deterministic backward over it equals
// the CPU backward bit for bit, the device-count variant too, and the atomic backward is within
// float tolerance. Shapes include the industrial one (8192 samples x 26 ids over 10,000 rows).
// Engine level: CUDA training with each model.embedding_backward setting.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/train/trainer.h"
#include "io/generators/mmoe_generator.h"
#include "kernels/embedding/embedding_bag.h"
#include "kernels/embedding/embedding_plan.h"
#include "tests/gpu/kernel_gpu_support.h"

namespace drgrad::gpu_test {
namespace {

using kernels::Pooling;

struct Bags {
  std::vector<std::int64_t> rows, offsets{0};
  std::int64_t batch() const { return static_cast<std::int64_t>(offsets.size()) - 1; }
  std::int64_t num_ids() const { return static_cast<std::int64_t>(rows.size()); }
};

// Bag sizes uniform in [min_bag, max_bag]; rows uniform in [0, table_rows).
Bags random_bags(std::mt19937& random, std::int64_t batch, std::int64_t table_rows, int min_bag,
                 int max_bag) {
  std::uniform_int_distribution<int> bag_size(min_bag, max_bag);
  std::uniform_int_distribution<std::int64_t> row(0, table_rows - 1);
  Bags bags;
  for (std::int64_t b = 0; b < batch; ++b) {
    const int size = bag_size(random);
    for (int i = 0; i < size; ++i) bags.rows.push_back(row(random));
    bags.offsets.push_back(bags.num_ids());
  }
  return bags;
}

// A plan in host vectors (CPU twin) with the documented capacities.
struct HostPlan {
  std::vector<std::int64_t> distinct_rows, occurrence_offsets, occurrence_samples,
      distinct_index_of_position;
  std::int64_t num_distinct = 0;
};
HostPlan cpu_plan(const Bags& bags, std::int64_t table_rows) {
  const auto n = static_cast<std::size_t>(bags.num_ids());
  HostPlan plan{std::vector<std::int64_t>(n), std::vector<std::int64_t>(n + 1),
                std::vector<std::int64_t>(n), std::vector<std::int64_t>(n)};
  kernels::EmbeddingBackwardPlan view;
  view.distinct_rows = plan.distinct_rows.data();
  view.occurrence_offsets = plan.occurrence_offsets.data();
  view.occurrence_samples = plan.occurrence_samples.data();
  view.num_distinct = &plan.num_distinct;
  view.distinct_index_of_position = plan.distinct_index_of_position.data();
  kernels::cpu::build_embedding_backward_plan(bags.rows.data(), bags.offsets.data(), bags.batch(),
                                              bags.num_ids(), table_rows, view);
  return plan;
}

// The same plan built on the device (one extra element per array, so that empty batches still
// get buffers).
struct DevicePlan {
  DeviceBuffer<std::int64_t> distinct_rows, occurrence_offsets, occurrence_samples,
      distinct_index_of_position, num_distinct;
  explicit DevicePlan(std::int64_t num_ids)
      : distinct_rows(num_ids + 1),
        occurrence_offsets(num_ids + 1),
        occurrence_samples(num_ids + 1),
        distinct_index_of_position(num_ids + 1),
        num_distinct(1) {}
  kernels::EmbeddingBackwardPlan view() {
    kernels::EmbeddingBackwardPlan plan;
    plan.distinct_rows = distinct_rows.data();
    plan.occurrence_offsets = occurrence_offsets.data();
    plan.occurrence_samples = occurrence_samples.data();
    plan.num_distinct = num_distinct.data();
    plan.distinct_index_of_position = distinct_index_of_position.data();
    return plan;
  }
};

std::vector<std::int64_t> head(const std::vector<std::int64_t>& values, std::int64_t count) {
  return {values.begin(), values.begin() + count};
}

void check_backwards(std::mt19937& random, const Bags& bags, std::int64_t table_rows,
                     std::int64_t dim, Pooling pooling, const std::string& what) {
  INFO(what << ": batch " << bags.batch() << ", " << bags.num_ids() << " ids, table " << table_rows
            << ", dim " << dim);
  const HostPlan expected = cpu_plan(bags, table_rows);
  DeviceBuffer<std::int64_t> rows(bags.rows.empty() ? std::vector<std::int64_t>{0} : bags.rows);
  DeviceBuffer<std::int64_t> offsets(bags.offsets);
  DevicePlan plan(bags.num_ids());
  kernels::build_embedding_backward_plan(cuda_context(), rows.data(), offsets.data(), bags.batch(),
                                         bags.num_ids(), table_rows, plan.view());
  const std::int64_t distinct = expected.num_distinct;
  REQUIRE(plan.num_distinct.download()[0] == distinct);
  CHECK(head(plan.distinct_rows.download(), distinct) == head(expected.distinct_rows, distinct));
  CHECK(head(plan.occurrence_offsets.download(), bags.num_ids() + 1) ==
        expected.occurrence_offsets);
  CHECK(head(plan.occurrence_samples.download(), bags.num_ids()) == expected.occurrence_samples);
  CHECK(head(plan.distinct_index_of_position.download(), bags.num_ids()) ==
        expected.distinct_index_of_position);

  const std::int64_t stride = dim + 1;
  const auto d_out = random_floats(random, bags.batch() * stride, -1.f, 1.f);
  DeviceBuffer<float> d_out_device(d_out);
  std::vector<float> cpu_gradients(distinct * dim);
  kernels::cpu::embedding_bag_backward(
      d_out.data(), stride, dim, bags.offsets.data(), pooling, expected.occurrence_offsets.data(),
      expected.occurrence_samples.data(), distinct, cpu_gradients.data());
  const float poison = std::numeric_limits<float>::quiet_NaN();
  const std::size_t rows_of_capacity = static_cast<std::size_t>(bags.num_ids() + 1) * dim;

  DeviceBuffer<float> deterministic(std::vector<float>(distinct * dim + 1, poison));
  kernels::embedding_bag_backward(cuda_context(), d_out_device.data(), stride, dim, offsets.data(),
                                  pooling, plan.occurrence_offsets.data(),
                                  plan.occurrence_samples.data(), distinct, deterministic.data());
  auto got = deterministic.download();
  got.pop_back();
  CHECK(got == cpu_gradients);  // same order of additions, same bits

  DeviceBuffer<float> counted(std::vector<float>(rows_of_capacity, poison));
  kernels::embedding_bag_backward_with_device_count(
      cuda_context(), d_out_device.data(), stride, dim, offsets.data(), pooling,
      plan.occurrence_offsets.data(), plan.occurrence_samples.data(), plan.num_distinct.data(),
      bags.num_ids(), counted.data());
  const auto counted_values = counted.download();
  CHECK(std::vector<float>(counted_values.begin(), counted_values.begin() + distinct * dim) ==
        cpu_gradients);
  bool rest_untouched = true;
  for (std::size_t i = distinct * dim; i < counted_values.size(); ++i) {
    rest_untouched = rest_untouched && std::isnan(counted_values[i]);
  }
  CHECK(rest_untouched);

  DeviceBuffer<float> atomic(std::vector<float>(distinct * dim + 1, poison));
  kernels::embedding_bag_backward_atomic(
      cuda_context(), d_out_device.data(), stride, dim, offsets.data(), bags.batch(), pooling,
      plan.distinct_index_of_position.data(), bags.num_ids(), distinct, atomic.data());
  auto atomic_values = atomic.download();
  atomic_values.pop_back();
  // Atomic additions come in any order: the rounding error of a row grows with its number of
  // terms, so the tolerance scales with the square root of the longest occurrence list.
  std::int64_t longest = 1;
  for (std::int64_t u = 0; u < distinct; ++u) {
    longest =
        std::max(longest, expected.occurrence_offsets[u + 1] - expected.occurrence_offsets[u]);
  }
  check_close(atomic_values, cpu_gradients, kFloatTolerance * std::sqrt(double(longest)),
              what + " atomic");
}

}  // namespace

TEST_CASE("device backward plan and backwards match the CPU twin", "[gpu][embedding]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (const Pooling pooling : {Pooling::kSum, Pooling::kMean}) {
    for (const std::int64_t table_rows : {1, 13, 10000, 5000000}) {
      for (const std::int64_t batch : {1, 33, 1000}) {
        for (const std::int64_t dim : {1, 16, 45}) {
          check_backwards(random, random_bags(random, batch, table_rows, 0, 5), table_rows, dim,
                          pooling, "random bags");
        }
      }
    }
  }
}

TEST_CASE("device backward plan on the industrial shape: 8192 x 26 ids over 10,000 rows",
          "[gpu][embedding]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  // All 26 slots' ids as one bag per sample (the plan does not care which slot an id is from),
  // and one slot alone (one id per sample), as the engine builds it.
  check_backwards(random, random_bags(random, 8192, 10000, 26, 26), 10000, 16, Pooling::kSum,
                  "8192 x 26");
  check_backwards(random, random_bags(random, 8192, 10000, 1, 1), 10000, 16, Pooling::kMean,
                  "8192 x 1");
}

TEST_CASE("device backward plan: all bags empty, all rows distinct, one hot row",
          "[gpu][embedding]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  Bags empty;
  empty.offsets.assign(17, 0);
  check_backwards(random, empty, 50, 8, Pooling::kMean, "all empty");
  Bags distinct;
  for (std::int64_t b = 0; b < 3000; ++b) {
    distinct.rows.push_back(3 * (2999 - b));
    distinct.offsets.push_back(b + 1);
  }
  check_backwards(random, distinct, 9000, 16, Pooling::kSum, "all distinct");
  Bags hot;  // one row named by every sample, several times: one long occurrence list
  for (std::int64_t b = 0; b < 4096; ++b) {
    for (int k = 0; k < 3; ++k) hot.rows.push_back(k == 1 ? 7 : 123);
    hot.offsets.push_back(hot.num_ids());
  }
  check_backwards(random, hot, 200, 16, Pooling::kMean, "hot row");
}

TEST_CASE("device backward plan repeats bit for bit", "[gpu][embedding]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  const Bags bags = random_bags(random, 2048, 300, 0, 8);
  DeviceBuffer<std::int64_t> rows(bags.rows), offsets(bags.offsets);
  std::vector<std::vector<std::int64_t>> runs;
  for (int run = 0; run < 2; ++run) {
    DevicePlan plan(bags.num_ids());
    kernels::build_embedding_backward_plan(cuda_context(), rows.data(), offsets.data(),
                                           bags.batch(), bags.num_ids(), 300, plan.view());
    runs.push_back(plan.occurrence_samples.download());
  }
  CHECK(runs[0] == runs[1]);
}

}  // namespace drgrad::gpu_test

// Engine level: a short CUDA training run with each model.embedding_backward setting.

namespace drgrad::gpu_test {
namespace {

std::vector<std::vector<float>> train_on_cuda(engine::EmbeddingBackward backward,
                                              std::int64_t vocabulary) {
  io::MmoeGeneratorOptions data;
  data.num_samples = 512;
  data.input_dim = 6;
  data.sparse_slots = 3;
  data.sparse_vocabulary = vocabulary;
  const io::GeneratedData train = io::generate_mmoe(data);
  engine::ModelSpec model;
  model.num_dense = 6;
  for (const auto& slot : train.schema.sparse_slots) {
    engine::EmbeddingSlotSpec spec{slot.name, slot.vocabulary_size, 8, Pooling::kMean,
                                   engine::OutOfRange::kError};
    spec.backward = backward;
    model.slots.push_back(spec);
  }
  model.tasks = {{"y1", 0, engine::TaskType::kBinary, 1.0, 1.0},
                 {"y2", 1, engine::TaskType::kBinary, 1.0, 1.0}};
  model.backbone = engine::BackboneKind::kMmoe;
  model.num_experts = 2;
  model.expert_units = {16};
  model.tower_units = {8};
  engine::OptimizerSpec optimizer;
  optimizer.learning_rate = 0.01;
  engine::TrainingOptions options;
  options.batch_size = 64;
  options.epochs = 2;
  options.show_progress = false;
  options.save_checkpoints = false;
  options.device = kernels::Device::cuda(0);
  engine::Trainer trainer(
      model, optimizer, options,
      std::make_unique<engine::InMemoryBatchStream>(train.schema, train.batch, options.batch_size,
                                                    true, 3),
      std::make_unique<engine::InMemoryBatchStream>(train.schema, train.batch, 256, false, 3));
  trainer.fit();
  std::vector<std::vector<float>> values;
  for (const auto& parameter : trainer.model().parameters().all()) {
    values.push_back(parameter->value.to_vector<float>());
  }
  return values;
}

}  // namespace

TEST_CASE("CUDA training: device_plan gives host_plan's parameters bit for bit, atomic close",
          "[gpu][embedding][trainer]") {
  DRGRAD_REQUIRE_GPU();
  for (const std::int64_t vocabulary : {20, 100000}) {
    INFO("vocabulary " << vocabulary);
    const auto host = train_on_cuda(engine::EmbeddingBackward::kHostPlan, vocabulary);
    const auto device = train_on_cuda(engine::EmbeddingBackward::kDevicePlan, vocabulary);
    const auto atomic = train_on_cuda(engine::EmbeddingBackward::kFastNondeterministic, vocabulary);
    CHECK(device == host);
    REQUIRE(atomic.size() == host.size());
    for (std::size_t p = 0; p < host.size(); ++p) {
      check_close(atomic[p], host[p], 1e-4, "parameter " + std::to_string(p) + " (atomic)");
    }
  }
}

}  // namespace drgrad::gpu_test
