// CPU twin of the optimizer steps: two or three steps of each rule worked out by hand, the lazy
// row-sparse updates (listed rows follow the dense rule, the other rows and their state never
// move), and the argument checks.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/optimizer/optimizer.h"

namespace {

using drgrad::kernels::AdagradOptions;
using drgrad::kernels::AdamOptions;
using drgrad::kernels::Context;
using drgrad::kernels::RowSparseGradient;
using drgrad::kernels::SgdOptions;
namespace kernels = drgrad::kernels;

std::vector<double> random_values(std::size_t n, std::mt19937& random, double low, double high) {
  std::uniform_real_distribution<double> distribution(low, high);
  std::vector<double> values(n);
  for (double& value : values) value = distribution(random);
  return values;
}

}  // namespace

TEST_CASE("SGD with momentum and L2 decay matches three steps by hand", "[optimizer]") {
  const SgdOptions options{.learning_rate = 0.1f, .momentum = 0.9f, .weight_decay = 0.01f};
  std::vector<double> w{1.0}, v{0.0};
  const double lr = double(0.1f), mu = double(0.9f), decay = double(0.01f);

  // Step 1: g' = 0.5 + 0.01 * 1 = 0.51; v = 0.51; w = 1 - 0.1 * 0.51 = 0.949.
  std::vector<double> g{0.5};
  kernels::sgd_update(Context::cpu(), options, w.data(), g.data(), v.data(), 1);
  double expected_v = 0.5 + decay * 1.0;
  double expected_w = 1.0 - lr * expected_v;
  CHECK(v[0] == Approx(expected_v).epsilon(1e-14));
  CHECK(w[0] == Approx(expected_w).epsilon(1e-14));
  CHECK(w[0] == Approx(0.949).epsilon(1e-7));  // the same with the options' decimal values

  // Step 2: g' = -0.2 + 0.01 * 0.949; v = 0.9 * 0.51 + g' = 0.26849; w = 0.949 - 0.026849.
  g = {-0.2};
  kernels::sgd_update(Context::cpu(), options, w.data(), g.data(), v.data(), 1);
  expected_v = mu * expected_v + (-0.2 + decay * expected_w);
  expected_w -= lr * expected_v;
  CHECK(v[0] == Approx(expected_v).epsilon(1e-14));
  CHECK(w[0] == Approx(expected_w).epsilon(1e-14));
  CHECK(w[0] == Approx(0.922151).epsilon(1e-7));

  // Step 3: g' = 0.3 + 0.01 * 0.922151; v = 0.9 * 0.26849 + g' = 0.55086251;
  // w = 0.922151 - 0.055086251 = 0.867064749.
  g = {0.3};
  kernels::sgd_update(Context::cpu(), options, w.data(), g.data(), v.data(), 1);
  expected_v = mu * expected_v + (0.3 + decay * expected_w);
  expected_w -= lr * expected_v;
  CHECK(v[0] == Approx(expected_v).epsilon(1e-14));
  CHECK(w[0] == Approx(expected_w).epsilon(1e-14));
  CHECK(w[0] == Approx(0.867064749).epsilon(1e-7));
}

TEST_CASE("plain SGD needs no velocity array", "[optimizer]") {
  // w = (1, -2) - 0.5 * (0.25, 1) = (0.875, -2.5), exact in binary.
  std::vector<float> w{1.f, -2.f}, g{0.25f, 1.f};
  kernels::sgd_update(Context::cpu(), SgdOptions{.learning_rate = 0.5f}, w.data(), g.data(),
                      static_cast<float*>(nullptr), 2);
  CHECK(w == std::vector<float>{0.875f, -2.5f});
}

TEST_CASE("AdamW with bias correction matches two steps by hand", "[optimizer]") {
  const AdamOptions options{.learning_rate = 0.01f,
                            .beta1 = 0.9f,
                            .beta2 = 0.999f,
                            .epsilon = 1e-8f,
                            .weight_decay = 0.1f};
  const double lr = double(0.01f), beta1 = double(0.9f), beta2 = double(0.999f),
               epsilon = double(1e-8f), decay = double(0.1f);
  std::vector<double> w{0.5}, m{0.0}, v{0.0};

  // Step 1, g = 0.2: m = 0.1 * 0.2 = 0.02; v = 0.001 * 0.04 = 4e-5; m_hat = 0.02 / 0.1 = 0.2;
  // v_hat = 4e-5 / 0.001 = 0.04; w = 0.5 - 0.01 (0.2 / (0.2 + 1e-8) + 0.1 * 0.5) ~ 0.4895.
  std::vector<double> g{0.2};
  kernels::adam_update(Context::cpu(), options, 1, w.data(), g.data(), m.data(), v.data(), 1);
  double expected_m = (1 - beta1) * 0.2;
  double expected_v = (1 - beta2) * 0.2 * 0.2;
  double expected_w =
      0.5 - lr * ((expected_m / (1 - beta1)) / (std::sqrt(expected_v / (1 - beta2)) + epsilon) +
                  decay * 0.5);
  CHECK(m[0] == Approx(expected_m).epsilon(1e-13));
  CHECK(v[0] == Approx(expected_v).epsilon(1e-13));
  CHECK(w[0] == Approx(expected_w).epsilon(1e-13));
  CHECK(w[0] == Approx(0.4895).epsilon(1e-7));

  // Step 2, g = -0.4: m = 0.9 * 0.02 - 0.04 = -0.022; v = 0.999 * 4e-5 + 0.001 * 0.16 =
  // 1.9996e-4; corrections 1 - 0.9^2 = 0.19 and 1 - 0.999^2 = 0.001999.
  g = {-0.4};
  kernels::adam_update(Context::cpu(), options, 2, w.data(), g.data(), m.data(), v.data(), 1);
  expected_m = beta1 * expected_m + (1 - beta1) * -0.4;
  expected_v = beta2 * expected_v + (1 - beta2) * 0.16;
  const double m_hat = expected_m / (1 - beta1 * beta1);
  const double v_hat = expected_v / (1 - beta2 * beta2);
  expected_w -= lr * (m_hat / (std::sqrt(v_hat) + epsilon) + decay * expected_w);
  CHECK(m[0] == Approx(expected_m).epsilon(1e-12));
  CHECK(v[0] == Approx(expected_v).epsilon(1e-12));
  CHECK(w[0] == Approx(expected_w).epsilon(1e-12));
  // The decimal values, to the digits float options keep (1 - 0.999f = 0.000999987).
  CHECK(m[0] == Approx(-0.022).epsilon(1e-6));
  CHECK(v[0] == Approx(1.9996e-4).epsilon(1e-4));
  CHECK(w[0] == Approx(0.4926715).epsilon(1e-6));
}

TEST_CASE("Adam's first step moves every weight by about the learning rate", "[optimizer]") {
  // With zero moments, m_hat = g and v_hat = g^2 after step 1, so w moves by lr * sign(g).
  std::vector<float> w{0.f, 0.f, 0.f}, g{3.f, -0.001f, 250.f}, m(3, 0.f), v(3, 0.f);
  kernels::adam_update(Context::cpu(), AdamOptions{.learning_rate = 0.5f}, 1, w.data(), g.data(),
                       m.data(), v.data(), 3);
  CHECK(w[0] == Approx(-0.5f).epsilon(1e-5));
  CHECK(w[1] == Approx(0.5f).epsilon(1e-4));
  CHECK(w[2] == Approx(-0.5f).epsilon(1e-5));
}

TEST_CASE("Adagrad matches two steps by hand", "[optimizer]") {
  // Accumulator starting at 0. Step 1, g = 0.3: acc = 0.09, w = 1 - 0.1 * 0.3 / 0.3 = 0.9.
  // Step 2, g = 0.4: acc = 0.09 + 0.16 = 0.25, w = 0.9 - 0.1 * 0.4 / 0.5 = 0.82.
  const AdagradOptions options{.learning_rate = 0.1f, .epsilon = 1e-10f};
  const double lr = double(0.1f);
  std::vector<double> w{1.0}, accumulator{0.0}, g{0.3};
  kernels::adagrad_update(Context::cpu(), options, w.data(), g.data(), accumulator.data(), 1);
  CHECK(accumulator[0] == Approx(0.09).epsilon(1e-14));
  CHECK(w[0] == Approx(1.0 - lr * 0.3 / (0.3 + 1e-10)).epsilon(1e-14));
  g = {0.4};
  kernels::adagrad_update(Context::cpu(), options, w.data(), g.data(), accumulator.data(), 1);
  CHECK(accumulator[0] == Approx(0.25).epsilon(1e-14));
  CHECK(w[0] == Approx(0.9 - 0.1 * 0.4 / 0.5).epsilon(1e-7));

  // A caller-chosen start of 0.1 and L2 decay 0.5: g' = 0.3 + 0.5 * 1 = 0.8,
  // acc = 0.1 + 0.64 = 0.74, w = 1 - 0.1 * 0.8 / sqrt(0.74).
  std::vector<double> w2{1.0}, accumulator2{0.1}, g2{0.3};
  kernels::adagrad_update(Context::cpu(),
                          AdagradOptions{.learning_rate = 0.1f, .weight_decay = 0.5f}, w2.data(),
                          g2.data(), accumulator2.data(), 1);
  CHECK(accumulator2[0] == Approx(double(0.1) + 0.64).epsilon(1e-12));
  CHECK(w2[0] == Approx(1.0 - lr * 0.8 / (std::sqrt(0.74) + double(1e-10f))).epsilon(1e-7));
}

TEST_CASE("row-sparse updates follow the dense rule on listed rows and leave the rest alone",
          "[optimizer]") {
  std::mt19937 random(3);
  const std::int64_t table_rows = 7, dim = 3;
  const std::vector<std::int64_t> rows{4, 1, 6};
  const std::int64_t num_rows = static_cast<std::int64_t>(rows.size());
  const std::vector<double> initial_table = random_values(table_rows * dim, random, -1, 1);
  const std::vector<double> initial_state = random_values(table_rows * dim, random, 0.1, 1);
  const std::vector<double> initial_second = random_values(table_rows * dim, random, 0.1, 1);
  const std::vector<double> values = random_values(num_rows * dim, random, -1, 1);
  const RowSparseGradient<double> gradient{rows.data(), values.data(), num_rows, dim};

  // The reference: the dense update run on each listed row's slice, on copies.
  auto check_rows = [&](const std::vector<double>& table, const std::vector<double>& state,
                        const std::vector<double>& state_before,
                        const std::vector<double>& expected_table,
                        const std::vector<double>& expected_state) {
    for (std::int64_t row = 0; row < table_rows; ++row) {
      const bool listed = std::find(rows.begin(), rows.end(), row) != rows.end();
      for (std::int64_t c = 0; c < dim; ++c) {
        const std::size_t i = std::size_t(row * dim + c);
        if (listed) {
          CHECK(table[i] == expected_table[i]);
          CHECK(state[i] == expected_state[i]);
        } else {
          CHECK(table[i] == initial_table[i]);  // bit for bit: never touched
          CHECK(state[i] == state_before[i]);
        }
      }
    }
  };

  SECTION("SGD with momentum") {
    const SgdOptions options{.learning_rate = 0.3f, .momentum = 0.8f, .weight_decay = 0.1f};
    std::vector<double> table = initial_table, velocity = initial_state;
    kernels::sgd_update_rows(Context::cpu(), options, table.data(), table_rows, gradient,
                             velocity.data());
    std::vector<double> expected_table = initial_table, expected_velocity = initial_state;
    for (std::int64_t r = 0; r < num_rows; ++r) {
      kernels::cpu::sgd_update(options, expected_table.data() + rows[r] * dim,
                               values.data() + r * dim, expected_velocity.data() + rows[r] * dim,
                               dim);
    }
    check_rows(table, velocity, initial_state, expected_table, expected_velocity);
  }
  SECTION("lazy Adam") {
    const AdamOptions options{.learning_rate = 0.05f, .weight_decay = 0.01f};
    std::vector<double> table = initial_table, first = initial_state, second = initial_second;
    kernels::adam_update_rows(Context::cpu(), options, 5, table.data(), table_rows, gradient,
                              first.data(), second.data());
    std::vector<double> expected_table = initial_table, expected_first = initial_state,
                        expected_second = initial_second;
    for (std::int64_t r = 0; r < num_rows; ++r) {
      kernels::cpu::adam_update(options, 5, expected_table.data() + rows[r] * dim,
                                values.data() + r * dim, expected_first.data() + rows[r] * dim,
                                expected_second.data() + rows[r] * dim, dim);
    }
    check_rows(table, first, initial_state, expected_table, expected_first);
    check_rows(table, second, initial_second, expected_table, expected_second);
  }
  SECTION("Adagrad") {
    const AdagradOptions options{.learning_rate = 0.2f};
    std::vector<double> table = initial_table, accumulator = initial_state;
    kernels::adagrad_update_rows(Context::cpu(), options, table.data(), table_rows, gradient,
                                 accumulator.data());
    std::vector<double> expected_table = initial_table, expected_accumulator = initial_state;
    for (std::int64_t r = 0; r < num_rows; ++r) {
      kernels::cpu::adagrad_update(options, expected_table.data() + rows[r] * dim,
                                   values.data() + r * dim,
                                   expected_accumulator.data() + rows[r] * dim, dim);
    }
    check_rows(table, accumulator, initial_state, expected_table, expected_accumulator);
  }
}

TEST_CASE("a row-sparse step by hand: one listed row of a two-row table", "[optimizer]") {
  // Row 1 gets g = (0.5, -1); SGD lr 0.1, no momentum: row 1 = (1, 2) - 0.1 (0.5, -1).
  std::vector<double> table{7.0, 8.0, 1.0, 2.0};
  const std::vector<std::int64_t> rows{1};
  const std::vector<double> values{0.5, -1.0};
  kernels::sgd_update_rows(Context::cpu(), SgdOptions{.learning_rate = 0.1f}, table.data(), 2,
                           RowSparseGradient<double>{rows.data(), values.data(), 1, 2},
                           static_cast<double*>(nullptr));
  CHECK(table[0] == 7.0);
  CHECK(table[1] == 8.0);
  CHECK(table[2] == Approx(1.0 - double(0.1f) * 0.5).epsilon(1e-15));
  CHECK(table[3] == Approx(2.0 + double(0.1f) * 1.0).epsilon(1e-15));
}

TEST_CASE("optimizers reject bad options, steps, sizes and rows", "[optimizer]") {
  std::vector<float> w{1.f}, g{1.f}, state{0.f}, second{0.f};
  const Context cpu = Context::cpu();
  CHECK_THROWS_WITH(
      kernels::sgd_update(cpu, SgdOptions{.momentum = 1.f}, w.data(), g.data(), state.data(), 1),
      Catch::Contains("momentum"));
  CHECK_THROWS_WITH(kernels::sgd_update(cpu, SgdOptions{.momentum = 0.5f}, w.data(), g.data(),
                                        static_cast<float*>(nullptr), 1),
                    Catch::Contains("velocity"));
  CHECK_THROWS_WITH(kernels::sgd_update(cpu, SgdOptions{.learning_rate = -1.f}, w.data(), g.data(),
                                        state.data(), 1),
                    Catch::Contains("learning_rate"));
  CHECK_THROWS_WITH(kernels::adam_update(cpu, AdamOptions{}, 0, w.data(), g.data(), state.data(),
                                         second.data(), 1),
                    Catch::Contains("step 0"));
  CHECK_THROWS_WITH(kernels::adam_update(cpu, AdamOptions{.beta2 = 1.f}, 1, w.data(), g.data(),
                                         state.data(), second.data(), 1),
                    Catch::Contains("beta2"));
  CHECK_THROWS_WITH(kernels::adagrad_update(cpu, AdagradOptions{.epsilon = 0.f}, w.data(), g.data(),
                                            state.data(), 1),
                    Catch::Contains("epsilon"));
  CHECK_THROWS_WITH(kernels::adagrad_update(cpu, AdagradOptions{}, w.data(), g.data(),
                                            static_cast<float*>(nullptr), 1),
                    Catch::Contains("null"));
  CHECK_THROWS_AS(
      kernels::adagrad_update(cpu, AdagradOptions{}, w.data(), g.data(), state.data(), -1),
      std::invalid_argument);

  // A row outside the table: refused before anything is written.
  std::vector<float> table{1.f, 2.f, 3.f, 4.f}, accumulator(4, 0.f);
  const std::vector<std::int64_t> rows{0, 2};
  const std::vector<float> values{1.f, 1.f, 1.f, 1.f};
  CHECK_THROWS_AS(
      kernels::adagrad_update_rows(cpu, AdagradOptions{}, table.data(), 2,
                                   RowSparseGradient<float>{rows.data(), values.data(), 2, 2},
                                   accumulator.data()),
      std::out_of_range);
  CHECK(table == std::vector<float>{1.f, 2.f, 3.f, 4.f});
  CHECK(accumulator == std::vector<float>(4, 0.f));
  // More listed rows than the table has cannot be unique.
  const std::vector<std::int64_t> too_many{0, 1, 0};
  CHECK_THROWS_WITH(
      kernels::sgd_update_rows(cpu, SgdOptions{}, table.data(), 2,
                               RowSparseGradient<float>{too_many.data(), values.data(), 3, 1},
                               static_cast<float*>(nullptr)),
      Catch::Contains("num_rows"));

  // Double precision has no CUDA twin.
  std::vector<double> wd{1.0}, gd{1.0};
  Context cuda_context;
  cuda_context.device = kernels::Device::cuda(0);
  CHECK_THROWS_AS(kernels::sgd_update(cuda_context, SgdOptions{}, wd.data(), gd.data(),
                                      static_cast<double*>(nullptr), 1),
                  kernels::NotSupportedError);
}
