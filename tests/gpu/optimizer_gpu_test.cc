// CUDA twin of kernels/optimizer against the CPU twin: three steps of each rule on fresh random
// parameters, gradients and state, dense (several sizes, including 1 and sizes that are not a
// multiple of the 256-thread block) and row-sparse (untouched rows must stay bit-identical).
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/optimizer/optimizer.h"
#include "tests/gpu/gpu_test_support.h"

namespace {

namespace kernels = drgrad::kernels;
using drgrad::gpu_test::compare_close;
using drgrad::gpu_test::DeviceBuffer;
using drgrad::gpu_test::random_floats;
using kernels::AdagradOptions;
using kernels::AdamOptions;
using kernels::RowSparseGradient;
using kernels::SgdOptions;

enum class Rule { kSgd, kAdam, kAdagrad };
const char* rule_name(Rule rule) {
  return rule == Rule::kSgd ? "sgd" : rule == Rule::kAdam ? "adam" : "adagrad";
}

const SgdOptions kSgd{.learning_rate = 0.05f, .momentum = 0.9f, .weight_decay = 1e-3f};
const AdamOptions kAdam{.learning_rate = 1e-3f, .beta2 = 0.9999f, .weight_decay = 0.01f};
const AdagradOptions kAdagrad{.learning_rate = 0.1f, .epsilon = 1e-8f, .weight_decay = 1e-4f};

// Weights and two state arrays (Adam uses both, SGD and Adagrad the first). Adagrad's
// accumulator and Adam's second moment must be non-negative.
struct State {
  std::vector<float> weights, first, second;
};

State random_state(std::mt19937& random, std::size_t n) {
  return {random_floats(random, n, -1.f, 1.f), random_floats(random, n, 0.f, 0.5f),
          random_floats(random, n, 0.f, 0.01f)};
}

// fp32 tolerances. The absolute parts cover values that cancel towards zero (velocity and first
// moment: a fused multiply-add on the device rounds once where the CPU rounds twice); the
// second state only adds non-negative terms.
void check_state_close(const State& got, const State& expected) {
  const auto weights = compare_close(got.weights, expected.weights, 1e-5, 1e-6);
  const auto first = compare_close(got.first, expected.first, 1e-5, 1e-6);
  const auto second = compare_close(got.second, expected.second, 1e-5, 1e-9);
  INFO("weights: " << weights << "; first state: " << first << "; second state: " << second);
  CHECK(weights.mismatches == 0);
  CHECK(first.mismatches == 0);
  CHECK(second.mismatches == 0);
}

}  // namespace

TEST_CASE("CUDA dense optimizer steps match the CPU twin", "[gpu][optimizer]") {
  DRGRAD_REQUIRE_GPU();
  std::mt19937 random(555);
  const auto ctx = drgrad::gpu_test::cuda_context();
  for (const Rule rule : {Rule::kSgd, Rule::kAdam, Rule::kAdagrad}) {
    for (const std::size_t n : {std::size_t(1), std::size_t(255), std::size_t(257),
                                std::size_t(1000), std::size_t(100003)}) {
      INFO(rule_name(rule) << ", n = " << n);
      State cpu = random_state(random, n);
      DeviceBuffer<float> weights(cpu.weights), first(cpu.first), second(cpu.second);
      for (std::int64_t step = 1; step <= 3; ++step) {
        const std::vector<float> gradient = random_floats(random, n, -2.f, 2.f);
        DeviceBuffer<float> device_gradient(gradient);
        const auto count = static_cast<std::int64_t>(n);
        switch (rule) {
          case Rule::kSgd:
            kernels::cpu::sgd_update(kSgd, cpu.weights.data(), gradient.data(), cpu.first.data(),
                                     count);
            kernels::sgd_update(ctx, kSgd, weights.data(), device_gradient.data(), first.data(),
                                count);
            break;
          case Rule::kAdam:
            kernels::cpu::adam_update(kAdam, step, cpu.weights.data(), gradient.data(),
                                      cpu.first.data(), cpu.second.data(), count);
            kernels::adam_update(ctx, kAdam, step, weights.data(), device_gradient.data(),
                                 first.data(), second.data(), count);
            break;
          case Rule::kAdagrad:
            kernels::cpu::adagrad_update(kAdagrad, cpu.weights.data(), gradient.data(),
                                         cpu.first.data(), count);
            kernels::adagrad_update(ctx, kAdagrad, weights.data(), device_gradient.data(),
                                    first.data(), count);
            break;
        }
      }
      check_state_close({weights.download(), first.download(), second.download()}, cpu);
    }
  }
}

TEST_CASE("CUDA plain SGD runs without a velocity array", "[gpu][optimizer]") {
  DRGRAD_REQUIRE_GPU();
  std::mt19937 random(8);
  std::vector<float> weights = random_floats(random, 513, -1.f, 1.f);
  const std::vector<float> gradient = random_floats(random, 513, -1.f, 1.f);
  DeviceBuffer<float> device_weights(weights), device_gradient(gradient);
  const SgdOptions plain{.learning_rate = 0.25f};
  kernels::cpu::sgd_update(plain, weights.data(), gradient.data(), static_cast<float*>(nullptr),
                           513);
  kernels::sgd_update(drgrad::gpu_test::cuda_context(), plain, device_weights.data(),
                      device_gradient.data(), static_cast<float*>(nullptr), 513);
  CHECK(compare_close(device_weights.download(), weights, 1e-6, 1e-7).mismatches == 0);
}

TEST_CASE("CUDA row-sparse optimizer steps match the CPU twin and skip other rows",
          "[gpu][optimizer]") {
  DRGRAD_REQUIRE_GPU();
  std::mt19937 random(999);
  const auto ctx = drgrad::gpu_test::cuda_context();
  const std::int64_t table_rows = 1000;
  for (const Rule rule : {Rule::kSgd, Rule::kAdam, Rule::kAdagrad}) {
    for (const std::int64_t dim : {1, 3, 64, 129}) {
      for (const std::int64_t num_rows : {1, 17, 300}) {
        INFO(rule_name(rule) << ", dim " << dim << ", rows " << num_rows);
        const std::size_t n = std::size_t(table_rows * dim);
        const State initial = random_state(random, n);
        State cpu = initial;
        DeviceBuffer<float> table(initial.weights), first(initial.first), second(initial.second);
        std::vector<bool> touched(std::size_t(table_rows), false);

        for (std::int64_t step = 1; step <= 3; ++step) {
          // A fresh set of unique rows, in shuffled order, each step.
          std::vector<std::int64_t> all_rows(static_cast<std::size_t>(table_rows));
          std::iota(all_rows.begin(), all_rows.end(), std::int64_t(0));
          std::shuffle(all_rows.begin(), all_rows.end(), random);
          const std::vector<std::int64_t> rows(all_rows.begin(), all_rows.begin() + num_rows);
          for (const std::int64_t row : rows) touched[std::size_t(row)] = true;
          const std::vector<float> values =
              random_floats(random, std::size_t(num_rows * dim), -2.f, 2.f);
          DeviceBuffer<std::int64_t> device_rows(rows);
          DeviceBuffer<float> device_values(values);
          const RowSparseGradient<float> host_gradient{rows.data(), values.data(), num_rows, dim};
          const RowSparseGradient<float> device_gradient{device_rows.data(), device_values.data(),
                                                         num_rows, dim};
          switch (rule) {
            case Rule::kSgd:
              kernels::cpu::sgd_update_rows(kSgd, cpu.weights.data(), table_rows, host_gradient,
                                            cpu.first.data());
              kernels::sgd_update_rows(ctx, kSgd, table.data(), table_rows, device_gradient,
                                       first.data());
              break;
            case Rule::kAdam:
              kernels::cpu::adam_update_rows(kAdam, step, cpu.weights.data(), table_rows,
                                             host_gradient, cpu.first.data(), cpu.second.data());
              kernels::adam_update_rows(ctx, kAdam, step, table.data(), table_rows, device_gradient,
                                        first.data(), second.data());
              break;
            case Rule::kAdagrad:
              kernels::cpu::adagrad_update_rows(kAdagrad, cpu.weights.data(), table_rows,
                                                host_gradient, cpu.first.data());
              kernels::adagrad_update_rows(ctx, kAdagrad, table.data(), table_rows, device_gradient,
                                           first.data());
              break;
          }
        }
        const State gpu{table.download(), first.download(), second.download()};
        check_state_close(gpu, cpu);
        std::size_t moved_untouched = 0;
        for (std::int64_t row = 0; row < table_rows; ++row) {
          if (touched[std::size_t(row)]) continue;
          for (std::int64_t c = 0; c < dim; ++c) {
            const std::size_t i = std::size_t(row * dim + c);
            if (gpu.weights[i] != initial.weights[i] || gpu.first[i] != initial.first[i] ||
                gpu.second[i] != initial.second[i]) {
              ++moved_untouched;
            }
          }
        }
        CHECK(moved_untouched == 0);
      }
    }
  }
}
