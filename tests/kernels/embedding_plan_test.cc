// Tests of kernels/embedding/embedding_plan.h (CPU twin) against a plain reference plan built
// with a map, and of the backward variants that read it (device count, atomic) against the
// deterministic backward: empty bags, batch 1, all rows distinct, heavy repeats, both sort paths.
#include <catch2/catch.hpp>

#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/embedding/embedding_bag.h"
#include "kernels/embedding/embedding_plan.h"
#include "kernels/embedding/embedding_plan_math.h"

namespace drgrad::kernels {
namespace {

struct Bags {
  std::vector<std::int64_t> rows, offsets{0};
  std::int64_t batch() const { return static_cast<std::int64_t>(offsets.size()) - 1; }
  std::int64_t num_ids() const { return static_cast<std::int64_t>(rows.size()); }
};

// Bag sizes 0 .. max_bag, rows uniform in [0, table_rows).
Bags random_bags(std::mt19937& random, std::int64_t batch, std::int64_t table_rows, int max_bag) {
  std::uniform_int_distribution<int> bag_size(0, max_bag);
  std::uniform_int_distribution<std::int64_t> row(0, table_rows - 1);
  Bags bags;
  for (std::int64_t b = 0; b < batch; ++b) {
    const int size = bag_size(random);
    for (int i = 0; i < size; ++i) bags.rows.push_back(row(random));
    bags.offsets.push_back(bags.num_ids());
  }
  return bags;
}

// The plan as a reader would write it: for each distinct row (ascending), its samples in id
// position order.
struct ReferencePlan {
  std::vector<std::int64_t> distinct_rows, occurrence_offsets{0}, occurrence_samples;
};
ReferencePlan reference_plan(const Bags& bags) {
  std::map<std::int64_t, std::vector<std::int64_t>> samples_of_row;
  for (std::int64_t b = 0; b < bags.batch(); ++b) {
    for (std::int64_t i = bags.offsets[b]; i < bags.offsets[b + 1]; ++i) {
      samples_of_row[bags.rows[i]].push_back(b);
    }
  }
  ReferencePlan plan;
  for (const auto& [row, samples] : samples_of_row) {
    plan.distinct_rows.push_back(row);
    plan.occurrence_samples.insert(plan.occurrence_samples.end(), samples.begin(), samples.end());
    plan.occurrence_offsets.push_back(static_cast<std::int64_t>(plan.occurrence_samples.size()));
  }
  return plan;
}

// The CPU twin's plan in host vectors of the documented capacity, poisoned beforehand.
struct PlanArrays {
  std::vector<std::int64_t> distinct_rows, occurrence_offsets, occurrence_samples,
      distinct_index_of_position;
  std::int64_t num_distinct = -1;
  EmbeddingBackwardPlan view() {
    EmbeddingBackwardPlan plan;
    plan.distinct_rows = distinct_rows.data();
    plan.occurrence_offsets = occurrence_offsets.data();
    plan.occurrence_samples = occurrence_samples.data();
    plan.num_distinct = &num_distinct;
    plan.distinct_index_of_position = distinct_index_of_position.data();
    return plan;
  }
};
PlanArrays cpu_plan(const Bags& bags, std::int64_t table_rows) {
  const auto n = static_cast<std::size_t>(bags.num_ids());
  PlanArrays arrays{std::vector<std::int64_t>(n, -7), std::vector<std::int64_t>(n + 1, -7),
                    std::vector<std::int64_t>(n, -7), std::vector<std::int64_t>(n, -7)};
  build_embedding_backward_plan(Context{}, bags.rows.data(), bags.offsets.data(), bags.batch(),
                                bags.num_ids(), table_rows, arrays.view());
  return arrays;
}

void check_plan(const Bags& bags, std::int64_t table_rows, const std::string& what) {
  INFO(what << ": batch " << bags.batch() << ", " << bags.num_ids() << " ids, table "
            << table_rows);
  const ReferencePlan expected = reference_plan(bags);
  const PlanArrays got = cpu_plan(bags, table_rows);
  const auto distinct = static_cast<std::int64_t>(expected.distinct_rows.size());
  REQUIRE(got.num_distinct == distinct);
  CHECK(std::vector<std::int64_t>(got.distinct_rows.begin(),
                                  got.distinct_rows.begin() + distinct) == expected.distinct_rows);
  CHECK(std::vector<std::int64_t>(got.occurrence_offsets.begin(),
                                  got.occurrence_offsets.begin() + distinct + 1) ==
        expected.occurrence_offsets);
  for (std::int64_t u = distinct; u <= bags.num_ids(); ++u) {
    CHECK(got.occurrence_offsets[u] == bags.num_ids());
  }
  CHECK(got.occurrence_samples == expected.occurrence_samples);
  for (std::int64_t p = 0; p < bags.num_ids(); ++p) {
    const std::int64_t u = got.distinct_index_of_position[p];
    REQUIRE(u >= 0);
    REQUIRE(u < distinct);
    CHECK(got.distinct_rows[u] == bags.rows[p]);
  }
}

// Upstream gradients d_out [batch, stride] with random values.
std::vector<double> random_upstream(std::mt19937& random, std::int64_t batch, std::int64_t stride) {
  std::uniform_real_distribution<double> value(-1.0, 1.0);
  std::vector<double> d_out(static_cast<std::size_t>(batch * stride));
  for (double& v : d_out) v = value(random);
  return d_out;
}

}  // namespace

TEST_CASE("segment_of finds the bag of every position, empty bags included", "[embedding]") {
  const std::vector<std::int64_t> offsets{0, 0, 2, 2, 2, 5, 6, 6};  // 7 bags, 6 ids
  const std::vector<std::int64_t> expected{1, 1, 4, 4, 4, 5};
  for (std::int64_t p = 0; p < 6; ++p) {
    CHECK(embedding_math::segment_of(offsets.data(), 7, p) == expected[p]);
  }
  CHECK(embedding_math::row_key_bits(1) == 1);
  CHECK(embedding_math::row_key_bits(2) == 1);
  CHECK(embedding_math::row_key_bits(3) == 2);
  CHECK(embedding_math::row_key_bits(10000) == 14);
  CHECK(embedding_math::row_key_bits(std::int64_t{1} << 40) == 40);
}

TEST_CASE("CPU backward plan matches the reference plan", "[embedding]") {
  std::mt19937 random(20261203);
  // Small tables: many repeats, counting-sort path. Large tables: merge-sort path.
  for (std::int64_t table_rows : {1, 3, 50, 10000, 1000000}) {
    for (std::int64_t batch : {1, 2, 37, 500}) {
      for (int max_bag : {0, 1, 4, 9}) {
        check_plan(random_bags(random, batch, table_rows, max_bag), table_rows, "random");
      }
    }
  }
}

TEST_CASE("CPU backward plan: all rows distinct, one row everywhere, all bags empty",
          "[embedding]") {
  Bags distinct;
  for (std::int64_t b = 0; b < 64; ++b) {  // rows in descending order, one per bag
    distinct.rows.push_back(1000 - 3 * b);
    distinct.offsets.push_back(b + 1);
  }
  check_plan(distinct, 1001, "all distinct");
  const PlanArrays arrays = cpu_plan(distinct, 1001);
  CHECK(arrays.num_distinct == 64);

  Bags same;
  for (std::int64_t b = 0; b < 40; ++b) {
    for (int k = 0; k < 3; ++k) same.rows.push_back(5);
    same.offsets.push_back(same.num_ids());
  }
  check_plan(same, 6, "one row");

  Bags empty;
  empty.offsets.assign(9, 0);
  check_plan(empty, 10, "all empty");
  CHECK(cpu_plan(empty, 10).num_distinct == 0);

  Bags no_samples;  // batch 0
  check_plan(no_samples, 10, "batch 0");
}

TEST_CASE("CPU backward plan refuses rows outside the table and inconsistent sizes",
          "[embedding]") {
  Bags bags;
  bags.rows = {0, 4, 2};
  bags.offsets = {0, 2, 3};
  CHECK_THROWS_AS(cpu_plan(bags, 4), std::out_of_range);
  PlanArrays arrays = cpu_plan(bags, 5);
  CHECK_THROWS_AS(build_embedding_backward_plan(Context{}, bags.rows.data(), bags.offsets.data(), 2,
                                                2, 5, arrays.view()),
                  std::invalid_argument);
  EmbeddingBackwardPlan missing = arrays.view();
  missing.occurrence_samples = nullptr;
  CHECK_THROWS_AS(build_embedding_backward_plan(Context{}, bags.rows.data(), bags.offsets.data(), 2,
                                                3, 5, missing),
                  std::invalid_argument);
}

TEST_CASE("backward variants on the CPU plan give the deterministic backward's bits",
          "[embedding]") {
  std::mt19937 random(7);
  for (Pooling pooling : {Pooling::kSum, Pooling::kMean}) {
    for (std::int64_t dim : {1, 5, 33}) {
      for (std::int64_t batch : {1, 64, 300}) {
        const Bags bags = random_bags(random, batch, 11, 6);
        PlanArrays plan = cpu_plan(bags, 11);
        const std::int64_t distinct = plan.num_distinct, stride = dim + 2;
        const auto d_out = random_upstream(random, batch, stride);
        std::vector<double> deterministic(distinct * dim, std::nan(""));
        cpu::embedding_bag_backward(d_out.data(), stride, dim, bags.offsets.data(), pooling,
                                    plan.occurrence_offsets.data(), plan.occurrence_samples.data(),
                                    distinct, deterministic.data());
        // The device-count variant over the full capacity writes the counted rows only.
        const double untouched = -123.5;
        std::vector<double> counted(bags.num_ids() * dim, untouched);
        embedding_bag_backward_with_device_count<double>(
            Context{}, d_out.data(), stride, dim, bags.offsets.data(), pooling,
            plan.occurrence_offsets.data(), plan.occurrence_samples.data(), &plan.num_distinct,
            bags.num_ids(), counted.data());
        CHECK(std::vector<double>(counted.begin(), counted.begin() + distinct * dim) ==
              deterministic);
        for (std::size_t i = distinct * dim; i < counted.size(); ++i) {
          CHECK(counted[i] == untouched);
        }
        std::vector<double> atomic(distinct * dim, std::nan(""));
        embedding_bag_backward_atomic<double>(
            Context{}, d_out.data(), stride, dim, bags.offsets.data(), batch, pooling,
            plan.distinct_index_of_position.data(), bags.num_ids(), distinct, atomic.data());
        CHECK(atomic == deterministic);
      }
    }
  }
}

TEST_CASE("deterministic backward over the plan equals sums computed by hand", "[embedding]") {
  // Bags {2, 0, 2}, {}, {0}: row 0 gets sample 0 and sample 2, row 2 gets sample 0 twice.
  Bags bags;
  bags.rows = {2, 0, 2, 0};
  bags.offsets = {0, 3, 3, 4};
  PlanArrays plan = cpu_plan(bags, 3);
  REQUIRE(plan.num_distinct == 2);
  const std::vector<float> d_out{1.f, 10.f, 100.f, 1000.f, 0.5f, 0.25f};  // [3, 2]
  std::vector<float> sum(4), mean(4);
  cpu::embedding_bag_backward(d_out.data(), 2, 2, bags.offsets.data(), Pooling::kSum,
                              plan.occurrence_offsets.data(), plan.occurrence_samples.data(), 2,
                              sum.data());
  CHECK(sum == std::vector<float>{1.5f, 10.25f, 2.f, 20.f});
  embedding_bag_backward_atomic<float>(Context{}, d_out.data(), 2, 2, bags.offsets.data(), 3,
                                       Pooling::kMean, plan.distinct_index_of_position.data(), 4, 2,
                                       mean.data());
  const float third = 1.f / 3;  // the mean scale of the first bag, as the kernels compute it
  CHECK(mean == std::vector<float>{third * 1.f + 0.5f, third * 10.f + 0.25f,
                                   third * 1.f + third * 1.f, third * 10.f + third * 10.f});
}

}  // namespace drgrad::kernels
