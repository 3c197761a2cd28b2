// CUDA twin of the row updates with the row count in device memory (kernels/optimizer/row_update.h)
// against the CPU twin: one table and many tables in one launch, three steps of each rule, counts
// from 0 to the capacity with poison past the count, untouched rows bit-identical, the skip count.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/optimizer/row_update.h"
#include "tests/gpu/gpu_test_support.h"

namespace {

namespace kernels = drgrad::kernels;
using drgrad::gpu_test::compare_close;
using drgrad::gpu_test::DeviceBuffer;
using drgrad::gpu_test::random_floats;
using kernels::RowUpdateSegment;

enum class Rule { kSgd, kAdam, kAdagrad };
const char* rule_name(Rule rule) {
  return rule == Rule::kSgd ? "sgd" : rule == Rule::kAdam ? "adam" : "adagrad";
}

kernels::UpdateRule rule_of(Rule rule, std::int64_t step) {
  switch (rule) {
    case Rule::kSgd:
      return kernels::sgd_rule({.learning_rate = 0.05f, .momentum = 0.9f, .weight_decay = 1e-3f});
    case Rule::kAdam:
      return kernels::adam_rule({.learning_rate = 1e-3f, .beta2 = 0.9999f, .weight_decay = 0.01f},
                                step);
    case Rule::kAdagrad:
      return kernels::adagrad_rule(
          {.learning_rate = 0.1f, .epsilon = 1e-8f, .weight_decay = 1e-4f});
  }
  return {};
}

// One table on the host (the CPU twin's copy) and on the device; the gradient is refilled per
// step with a fresh count and fresh rows, and poison past the count (a row outside the table,
// NaN values) that an update reading it would trip over or spread.
struct Table {
  std::int64_t table_rows = 0, dim = 0, capacity = 0;
  std::vector<float> weights, state_a, state_b, initial_weights, initial_a, initial_b;
  std::vector<bool> touched;
  std::int64_t count = 0;
  std::vector<std::int64_t> rows;
  std::vector<float> values;
  DeviceBuffer<float> device_weights, device_a, device_b, device_values;
  DeviceBuffer<std::int64_t> device_rows, device_count;

  Table(std::mt19937& random, std::int64_t table_rows_, std::int64_t dim_, std::int64_t capacity_)
      : table_rows(table_rows_),
        dim(dim_),
        capacity(capacity_),
        weights(random_floats(random, std::size_t(table_rows_ * dim_), -1.f, 1.f)),
        state_a(random_floats(random, weights.size(), 0.f, 0.5f)),
        state_b(random_floats(random, weights.size(), 0.f, 0.01f)),
        initial_weights(weights),
        initial_a(state_a),
        initial_b(state_b),
        touched(std::size_t(table_rows_), false),
        rows(std::size_t(capacity_)),
        values(std::size_t(capacity_ * dim_)),
        device_weights(weights),
        device_a(state_a),
        device_b(state_b),
        device_values(std::max<std::size_t>(values.size(), 1)),
        device_rows(std::max<std::size_t>(rows.size(), 1)),
        device_count(1) {}

  void new_gradient(std::mt19937& random, std::int64_t new_count) {
    count = new_count;
    std::vector<std::int64_t> all_rows(static_cast<std::size_t>(table_rows));
    std::iota(all_rows.begin(), all_rows.end(), std::int64_t(0));
    std::shuffle(all_rows.begin(), all_rows.end(), random);
    std::fill(rows.begin(), rows.end(), table_rows + 7);
    std::fill(values.begin(), values.end(), std::numeric_limits<float>::quiet_NaN());
    for (std::int64_t r = 0; r < count; ++r) {
      rows[std::size_t(r)] = all_rows[std::size_t(r)];
      touched[std::size_t(all_rows[std::size_t(r)])] = true;
    }
    const auto fresh = random_floats(random, std::size_t(count * dim), -2.f, 2.f);
    std::copy(fresh.begin(), fresh.end(), values.begin());
    if (capacity > 0) {
      device_rows.upload(rows);
      device_values.upload(values);
    }
    device_count.upload({count});
  }

  RowUpdateSegment<float> host_segment() {
    return {weights.data(), table_rows,     dim,           rows.data(), values.data(), &count,
            capacity,       state_a.data(), state_b.data()};
  }
  RowUpdateSegment<float> device_segment() {
    return {device_weights.data(), table_rows,          dim,      device_rows.data(),
            device_values.data(),  device_count.data(), capacity, device_a.data(),
            device_b.data()};
  }

  // Close to the CPU twin where touched (fp32; fused multiply-adds on the device round once where
  // the CPU rounds twice), bit-identical to the start where never touched.
  void check(bool expect_unchanged = false) const {
    const auto gpu_weights = device_weights.download();
    const auto gpu_a = device_a.download();
    const auto gpu_b = device_b.download();
    const auto weights_close = compare_close(gpu_weights, weights, 1e-5, 1e-6);
    const auto a_close = compare_close(gpu_a, state_a, 1e-5, 1e-6);
    const auto b_close = compare_close(gpu_b, state_b, 1e-5, 1e-9);
    INFO("weights: " << weights_close << "; first state: " << a_close
                     << "; second state: " << b_close);
    CHECK(weights_close.mismatches == 0);
    CHECK(a_close.mismatches == 0);
    CHECK(b_close.mismatches == 0);
    std::size_t moved_untouched = 0;
    for (std::int64_t row = 0; row < table_rows; ++row) {
      if (touched[std::size_t(row)] && !expect_unchanged) continue;
      for (std::int64_t c = 0; c < dim; ++c) {
        const std::size_t i = std::size_t(row * dim + c);
        if (gpu_weights[i] != initial_weights[i] || gpu_a[i] != initial_a[i] ||
            gpu_b[i] != initial_b[i]) {
          ++moved_untouched;
        }
      }
    }
    CHECK(moved_untouched == 0);
  }
};

}  // namespace

TEST_CASE("CUDA multi-table row update with device counts matches the CPU twin",
          "[gpu][optimizer][row_update]") {
  DRGRAD_REQUIRE_GPU();
  std::mt19937 random(77);
  const auto ctx = drgrad::gpu_test::cuda_context();
  for (const Rule rule : {Rule::kSgd, Rule::kAdam, Rule::kAdagrad}) {
    INFO(rule_name(rule));
    // (table rows, dim, capacity): awkward sizes, a capacity above the table's rows (repeated
    // ids), one with no capacity, and the industrial shape (26 tables of 10,000 x 16, 8192 ids).
    std::vector<std::array<std::int64_t, 3>> shapes{{1, 1, 1},  {37, 3, 50}, {500, 129, 300},
                                                    {10, 4, 0}, {2, 7, 2},   {1000, 1, 257}};
    for (int t = 0; t < 26; ++t) shapes.push_back({10000, 16, 8192});
    std::vector<Table> tables;
    tables.reserve(shapes.size());
    for (const auto& [table_rows, dim, capacity] : shapes) {
      tables.emplace_back(random, table_rows, dim, capacity);
    }
    for (std::int64_t step = 1; step <= 3; ++step) {
      std::vector<RowUpdateSegment<float>> host_segments, device_segments;
      for (Table& table : tables) {
        // Counts from 0 to the largest the capacity and the table allow.
        const std::int64_t most = std::min(table.capacity, table.table_rows);
        const std::int64_t count =
            step == 1 ? most : std::uniform_int_distribution<std::int64_t>(0, most)(random);
        table.new_gradient(random, count);
        host_segments.push_back(table.host_segment());
        device_segments.push_back(table.device_segment());
      }
      const auto host_table =
          kernels::make_row_update_table<float>(kernels::Device::cpu(), host_segments);
      const auto device_table = kernels::make_row_update_table<float>(ctx.device, device_segments);
      kernels::fused_row_update<float>(kernels::Context::cpu(), rule_of(rule, step), host_table);
      kernels::fused_row_update<float>(ctx, rule_of(rule, step), device_table);
    }
    for (std::size_t t = 0; t < tables.size(); ++t) {
      INFO("table " << t);
      tables[t].check();
    }
  }
}

TEST_CASE("CUDA single-table row updates with a device count match the CPU twin",
          "[gpu][optimizer][row_update]") {
  DRGRAD_REQUIRE_GPU();
  std::mt19937 random(78);
  const auto ctx = drgrad::gpu_test::cuda_context();
  for (const Rule rule : {Rule::kSgd, Rule::kAdam, Rule::kAdagrad}) {
    for (const std::int64_t count : {0, 1, 33, 300}) {
      INFO(rule_name(rule) << ", count " << count);
      Table table(random, 400, 19, 300);
      for (std::int64_t step = 1; step <= 2; ++step) {
        table.new_gradient(random, count);
        const kernels::UpdateRule update = rule_of(rule, step);
        const kernels::DeviceCountRowGradient<float> host{table.rows.data(), table.values.data(),
                                                          &table.count, table.capacity, table.dim};
        const kernels::DeviceCountRowGradient<float> device{
            table.device_rows.data(), table.device_values.data(), table.device_count.data(),
            table.capacity, table.dim};
        switch (rule) {
          case Rule::kSgd:
            kernels::sgd_update_rows_device_count<float>(kernels::Context::cpu(), update.sgd,
                                                         table.weights.data(), table.table_rows,
                                                         host, table.state_a.data());
            kernels::sgd_update_rows_device_count<float>(
                ctx, update.sgd, table.device_weights.data(), table.table_rows, device,
                table.device_a.data());
            break;
          case Rule::kAdam:
            kernels::adam_update_rows_device_count<float>(
                kernels::Context::cpu(), update.adam, step, table.weights.data(), table.table_rows,
                host, table.state_a.data(), table.state_b.data());
            kernels::adam_update_rows_device_count<float>(
                ctx, update.adam, step, table.device_weights.data(), table.table_rows, device,
                table.device_a.data(), table.device_b.data());
            break;
          case Rule::kAdagrad:
            kernels::adagrad_update_rows_device_count<float>(
                kernels::Context::cpu(), update.adagrad, table.weights.data(), table.table_rows,
                host, table.state_a.data());
            kernels::adagrad_update_rows_device_count<float>(
                ctx, update.adagrad, table.device_weights.data(), table.table_rows, device,
                table.device_a.data());
            break;
        }
      }
      table.check();
    }
  }
}

TEST_CASE("CUDA multi-table row update writes nothing when the skip count is non-zero",
          "[gpu][optimizer][row_update]") {
  DRGRAD_REQUIRE_GPU();
  std::mt19937 random(79);
  const auto ctx = drgrad::gpu_test::cuda_context();
  std::vector<Table> tables;
  tables.reserve(2);
  tables.emplace_back(random, 300, 8, 200);
  tables.emplace_back(random, 50, 3, 64);
  std::vector<RowUpdateSegment<float>> device_segments;
  for (Table& table : tables) {
    table.new_gradient(random, std::min(table.capacity, table.table_rows));
    device_segments.push_back(table.device_segment());
  }
  const auto device_table = kernels::make_row_update_table<float>(ctx.device, device_segments);
  DeviceBuffer<std::int64_t> skip(std::vector<std::int64_t>{2});
  kernels::fused_row_update<float>(ctx, rule_of(Rule::kAdam, 1), device_table, skip.data());
  for (const Table& table : tables) table.check(/*expect_unchanged=*/true);
}
