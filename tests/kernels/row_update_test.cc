// CPU twin of the row updates with the row count in device memory (kernels/optimizer/row_update.h):
// one table and many tables in one pass give the bits of the per-table row updates with the count
// on the host, entries past the count are never read, the skip count vetoes a whole pass, and bad
// counts, rows and arguments are refused before anything is written.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "kernels/optimizer/optimizer.h"
#include "kernels/optimizer/row_update.h"

namespace {

namespace kernels = drgrad::kernels;
using kernels::AdagradOptions;
using kernels::AdamOptions;
using kernels::Context;
using kernels::DeviceCountRowGradient;
using kernels::RowSparseGradient;
using kernels::RowUpdateSegment;
using kernels::SgdOptions;

enum class Rule { kSgd, kAdam, kAdagrad };
const char* rule_name(Rule rule) {
  return rule == Rule::kSgd ? "sgd" : rule == Rule::kAdam ? "adam" : "adagrad";
}

const SgdOptions kSgd{.learning_rate = 0.05f, .momentum = 0.9f, .weight_decay = 1e-3f};
const AdamOptions kAdam{.learning_rate = 1e-2f, .beta2 = 0.9999f, .weight_decay = 0.01f};
const AdagradOptions kAdagrad{.learning_rate = 0.1f, .epsilon = 1e-8f, .weight_decay = 1e-4f};

kernels::UpdateRule rule_of(Rule rule, std::int64_t step) {
  switch (rule) {
    case Rule::kSgd:
      return kernels::sgd_rule(kSgd);
    case Rule::kAdam:
      return kernels::adam_rule(kAdam, step);
    case Rule::kAdagrad:
      return kernels::adagrad_rule(kAdagrad);
  }
  return {};
}

template <typename T>
std::vector<T> random_values(std::mt19937& random, std::size_t n, double low, double high) {
  std::uniform_real_distribution<double> distribution(low, high);
  std::vector<T> values(n);
  for (T& value : values) value = static_cast<T>(distribution(random));
  return values;
}

// One table with its state and one step's gradient, laid out for a capacity larger than the
// count: rows and values past the count hold poison (a row outside the table, NaN gradients) that
// an update reading them would spread or trip over.
template <typename T>
struct Table {
  std::int64_t table_rows = 0, dim = 0, capacity = 0;
  std::int64_t count = 0;  // the "device" count (the CPU twin reads it through the pointer)
  std::vector<T> weights, state_a, state_b;
  std::vector<std::int64_t> rows;
  std::vector<T> values;
};

template <typename T>
Table<T> random_table(std::mt19937& random, std::int64_t table_rows, std::int64_t dim,
                      std::int64_t capacity, std::int64_t count) {
  Table<T> table;
  table.table_rows = table_rows;
  table.dim = dim;
  table.capacity = capacity;
  table.count = count;
  const std::size_t n = std::size_t(table_rows * dim);
  table.weights = random_values<T>(random, n, -1, 1);
  table.state_a = random_values<T>(random, n, 0, 0.5);
  table.state_b = random_values<T>(random, n, 0, 0.01);
  std::vector<std::int64_t> all_rows(static_cast<std::size_t>(table_rows));
  for (std::int64_t r = 0; r < table_rows; ++r) all_rows[std::size_t(r)] = r;
  std::shuffle(all_rows.begin(), all_rows.end(), random);
  table.rows.assign(std::size_t(capacity), table_rows + 5);
  for (std::int64_t r = 0; r < count; ++r) table.rows[std::size_t(r)] = all_rows[std::size_t(r)];
  table.values.assign(std::size_t(capacity * dim), std::numeric_limits<T>::quiet_NaN());
  const auto fresh = random_values<T>(random, std::size_t(count * dim), -2, 2);
  std::copy(fresh.begin(), fresh.end(), table.values.begin());
  return table;
}

template <typename T>
RowUpdateSegment<T> segment_of(Table<T>& table) {
  RowUpdateSegment<T> segment;
  segment.table = table.weights.data();
  segment.table_rows = table.table_rows;
  segment.dim = table.dim;
  segment.rows = table.rows.data();
  segment.values = table.values.data();
  segment.num_rows_device = &table.count;
  segment.capacity = table.capacity;
  segment.state_a = table.state_a.data();
  segment.state_b = table.state_b.data();
  return segment;
}

// The reference: the row update of optimizer.h with the count on the host.
template <typename T>
void reference_update(Rule rule, std::int64_t step, Table<T>& table) {
  const Context cpu = Context::cpu();
  const RowSparseGradient<T> gradient{table.rows.data(), table.values.data(), table.count,
                                      table.dim};
  switch (rule) {
    case Rule::kSgd:
      kernels::sgd_update_rows<T>(cpu, kSgd, table.weights.data(), table.table_rows, gradient,
                                  table.state_a.data());
      break;
    case Rule::kAdam:
      kernels::adam_update_rows<T>(cpu, kAdam, step, table.weights.data(), table.table_rows,
                                   gradient, table.state_a.data(), table.state_b.data());
      break;
    case Rule::kAdagrad:
      kernels::adagrad_update_rows<T>(cpu, kAdagrad, table.weights.data(), table.table_rows,
                                      gradient, table.state_a.data());
      break;
  }
}

template <typename T>
void device_count_update(Rule rule, std::int64_t step, Table<T>& table,
                         const std::int64_t* skip = nullptr) {
  const Context cpu = Context::cpu();
  const DeviceCountRowGradient<T> gradient{table.rows.data(), table.values.data(), &table.count,
                                           table.capacity,    table.dim,           skip};
  switch (rule) {
    case Rule::kSgd:
      kernels::sgd_update_rows_device_count<T>(cpu, kSgd, table.weights.data(), table.table_rows,
                                               gradient, table.state_a.data());
      break;
    case Rule::kAdam:
      kernels::adam_update_rows_device_count<T>(cpu, kAdam, step, table.weights.data(),
                                                table.table_rows, gradient, table.state_a.data(),
                                                table.state_b.data());
      break;
    case Rule::kAdagrad:
      kernels::adagrad_update_rows_device_count<T>(
          cpu, kAdagrad, table.weights.data(), table.table_rows, gradient, table.state_a.data());
      break;
  }
}

// Bit for bit, element by element (NaN never expected here).
template <typename T>
std::size_t differing(const std::vector<T>& a, const std::vector<T>& b) {
  REQUIRE(a.size() == b.size());
  std::size_t count = 0;
  for (std::size_t i = 0; i < a.size(); ++i) count += a[i] == b[i] ? 0 : 1;
  return count;
}

template <typename T>
void check_same_bits(const Table<T>& got, const Table<T>& expected) {
  CHECK(differing(got.weights, expected.weights) == 0);
  CHECK(differing(got.state_a, expected.state_a) == 0);
  CHECK(differing(got.state_b, expected.state_b) == 0);
}

template <typename T>
void check_one_table_matches_host_count() {
  std::mt19937 random(21);
  for (const Rule rule : {Rule::kSgd, Rule::kAdam, Rule::kAdagrad}) {
    // (table rows, dim, capacity, count): none touched, one, some, every capacity slot used,
    // a capacity larger than the table (repeated ids), and dim 1.
    const std::vector<std::array<std::int64_t, 4>> shapes{
        {9, 3, 6, 0}, {9, 3, 6, 1}, {50, 5, 40, 17}, {12, 4, 12, 12}, {5, 2, 30, 5}, {20, 1, 8, 7}};
    for (const auto& [table_rows, dim, capacity, count] : shapes) {
      INFO(rule_name(rule) << ": rows " << table_rows << ", dim " << dim << ", capacity "
                           << capacity << ", count " << count);
      Table<T> table = random_table<T>(random, table_rows, dim, capacity, count);
      Table<T> expected = table;
      for (std::int64_t step = 1; step <= 3; ++step) {
        device_count_update(rule, step, table);
        reference_update(rule, step, expected);
      }
      check_same_bits(table, expected);
    }
  }
}

}  // namespace

TEST_CASE("row updates with a device count give the bits of the row update with a host count",
          "[optimizer][row_update]") {
  check_one_table_matches_host_count<float>();
  check_one_table_matches_host_count<double>();
}

TEST_CASE("one multi-table row update gives the bits of one row update per table",
          "[optimizer][row_update]") {
  std::mt19937 random(5);
  for (const Rule rule : {Rule::kSgd, Rule::kAdam, Rule::kAdagrad}) {
    INFO(rule_name(rule));
    // Tables of different shapes; one with nothing touched, one with no capacity at all.
    std::vector<Table<float>> tables{
        random_table<float>(random, 30, 4, 20, 11), random_table<float>(random, 7, 16, 7, 0),
        random_table<float>(random, 100, 3, 64, 64), random_table<float>(random, 8, 2, 0, 0),
        random_table<float>(random, 3, 5, 9, 3)};
    std::vector<Table<float>> expected = tables;
    std::vector<RowUpdateSegment<float>> segments;
    for (auto& table : tables) segments.push_back(segment_of(table));
    const auto update_table =
        kernels::make_row_update_table<float>(kernels::Device::cpu(), segments);
    CHECK(update_table.host()[2].offset == 20 * 4 + 7 * 16);
    for (std::int64_t step = 1; step <= 3; ++step) {
      kernels::fused_row_update<float>(Context::cpu(), rule_of(rule, step), update_table);
      for (auto& table : expected) reference_update(rule, step, table);
    }
    for (std::size_t t = 0; t < tables.size(); ++t) {
      INFO("table " << t);
      check_same_bits(tables[t], expected[t]);
    }
  }
}

TEST_CASE("the row counts are read when the update runs, not when the table is built",
          "[optimizer][row_update]") {
  std::mt19937 random(8);
  Table<float> table = random_table<float>(random, 40, 3, 25, 25);
  Table<float> expected = table;
  const auto update_table =
      kernels::make_row_update_table<float>(kernels::Device::cpu(), {segment_of(table)});
  // The same table record, three steps with three counts.
  for (const std::int64_t count : {25, 4, 0}) {
    table.count = count;
    expected.count = count;
    kernels::fused_row_update<float>(Context::cpu(), kernels::adagrad_rule(kAdagrad), update_table);
    reference_update(Rule::kAdagrad, 1, expected);
  }
  check_same_bits(table, expected);
}

TEST_CASE("a non-zero skip count leaves every table and its state as it was",
          "[optimizer][row_update]") {
  std::mt19937 random(13);
  for (const Rule rule : {Rule::kSgd, Rule::kAdam, Rule::kAdagrad}) {
    INFO(rule_name(rule));
    std::vector<Table<float>> tables{random_table<float>(random, 30, 4, 20, 11),
                                     random_table<float>(random, 10, 2, 10, 10)};
    const std::vector<Table<float>> before = tables;
    std::vector<RowUpdateSegment<float>> segments;
    for (auto& table : tables) segments.push_back(segment_of(table));
    const auto update_table =
        kernels::make_row_update_table<float>(kernels::Device::cpu(), segments);
    const std::int64_t refused = 3;
    kernels::fused_row_update<float>(Context::cpu(), rule_of(rule, 1), update_table, &refused);
    device_count_update(rule, 1, tables[0], &refused);
    for (std::size_t t = 0; t < tables.size(); ++t) check_same_bits(tables[t], before[t]);

    // A zero count is no veto.
    const std::int64_t accepted = 0;
    std::vector<Table<float>> expected = before;
    kernels::fused_row_update<float>(Context::cpu(), rule_of(rule, 1), update_table, &accepted);
    for (auto& table : expected) reference_update(rule, 1, table);
    for (std::size_t t = 0; t < tables.size(); ++t) check_same_bits(tables[t], expected[t]);
  }
}

TEST_CASE("row updates with a device count refuse bad counts, rows and arguments",
          "[optimizer][row_update]") {
  std::mt19937 random(2);
  const Context cpu = Context::cpu();
  SECTION("a count beyond the capacity, in a later table: nothing is written anywhere") {
    std::vector<Table<float>> tables{random_table<float>(random, 10, 2, 5, 3),
                                     random_table<float>(random, 10, 2, 4, 4)};
    tables[1].count = 5;
    const std::vector<Table<float>> before = tables;
    const auto update_table = kernels::make_row_update_table<float>(
        kernels::Device::cpu(), {segment_of(tables[0]), segment_of(tables[1])});
    CHECK_THROWS_WITH(kernels::fused_row_update<float>(cpu, kernels::sgd_rule(kSgd), update_table),
                      Catch::Contains("segment 1") && Catch::Contains("capacity = 4"));
    for (std::size_t t = 0; t < tables.size(); ++t) check_same_bits(tables[t], before[t]);
    tables[1].count = -1;
    CHECK_THROWS_AS(kernels::fused_row_update<float>(cpu, kernels::sgd_rule(kSgd), update_table),
                    std::out_of_range);
  }
  SECTION("a row outside the table") {
    Table<float> table = random_table<float>(random, 10, 2, 5, 3);
    table.rows[2] = 10;
    const Table<float> before = table;
    CHECK_THROWS_WITH(device_count_update(Rule::kAdagrad, 1, table),
                      Catch::Contains("row index 10") && Catch::Contains("position 2"));
    check_same_bits(table, before);
  }
  SECTION("missing arrays and bad shapes") {
    Table<float> table = random_table<float>(random, 10, 2, 5, 3);
    RowUpdateSegment<float> segment = segment_of(table);
    segment.state_b = nullptr;
    CHECK_THROWS_WITH(kernels::fused_row_update<float>(
                          cpu, kernels::adam_rule(kAdam, 1),
                          kernels::make_row_update_table<float>(kernels::Device::cpu(), {segment})),
                      Catch::Contains("second moment"));
    segment = segment_of(table);
    segment.num_rows_device = nullptr;
    CHECK_THROWS_WITH(kernels::fused_row_update<float>(
                          cpu, kernels::sgd_rule(kSgd),
                          kernels::make_row_update_table<float>(kernels::Device::cpu(), {segment})),
                      Catch::Contains("row count"));
    segment = segment_of(table);
    segment.dim = 0;
    CHECK_THROWS_WITH(kernels::make_row_update_table<float>(kernels::Device::cpu(), {segment}),
                      Catch::Contains("dim 0"));
    segment = segment_of(table);
    segment.capacity = -2;
    CHECK_THROWS_AS(kernels::make_row_update_table<float>(kernels::Device::cpu(), {segment}),
                    std::invalid_argument);
    // SGD without momentum needs no velocity; with momentum it does.
    segment = segment_of(table);
    segment.state_a = nullptr;
    CHECK_NOTHROW(kernels::fused_row_update<float>(
        cpu, kernels::sgd_rule(SgdOptions{.learning_rate = 0.1f}),
        kernels::make_row_update_table<float>(kernels::Device::cpu(), {segment})));
    CHECK_THROWS_WITH(kernels::fused_row_update<float>(
                          cpu, kernels::sgd_rule(kSgd),
                          kernels::make_row_update_table<float>(kernels::Device::cpu(), {segment})),
                      Catch::Contains("velocity"));
    CHECK_THROWS_WITH(kernels::adam_update_rows_device_count<float>(
                          cpu, kAdam, 0, table.weights.data(), table.table_rows,
                          DeviceCountRowGradient<float>{table.rows.data(), table.values.data(),
                                                        &table.count, table.capacity, table.dim},
                          table.state_a.data(), table.state_b.data()),
                      Catch::Contains("step 0"));
  }
  SECTION("a table for another device, and double precision on CUDA") {
    Table<float> table = random_table<float>(random, 10, 2, 5, 3);
    Context cuda_context;
    cuda_context.device = kernels::Device::cuda(0);
    CHECK_THROWS_WITH(
        kernels::fused_row_update<float>(
            cuda_context, kernels::sgd_rule(kSgd),
            kernels::make_row_update_table<float>(kernels::Device::cpu(), {segment_of(table)})),
        Catch::Contains("lives on cpu"));
    Table<double> doubles = random_table<double>(random, 10, 2, 5, 3);
    CHECK_THROWS_AS(
        kernels::adagrad_update_rows_device_count<double>(
            cuda_context, kAdagrad, doubles.weights.data(), doubles.table_rows,
            DeviceCountRowGradient<double>{doubles.rows.data(), doubles.values.data(),
                                           &doubles.count, doubles.capacity, doubles.dim},
            doubles.state_a.data()),
        kernels::NotSupportedError);
  }
}
