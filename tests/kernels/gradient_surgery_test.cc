// CPU twin of gradient surgery: PCGrad and CAGrad on hand-computed two- and three-task cases
// (conflicting, cooperating, zero gradients), the CAGrad solver against a grid search of its
// objective, and the Gram/combination passes against plain loops.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/multitask/gradient_surgery.h"

namespace {

namespace kernels = drgrad::kernels;
using kernels::CagradOptions;
using kernels::Context;
using kernels::PcgradOptions;

// Rows of `gradients` are the task gradients; returns the combined gradient.
std::vector<double> run_pcgrad(const std::vector<std::vector<double>>& gradients,
                               const PcgradOptions& options) {
  std::vector<double> flat;
  for (const auto& row : gradients) flat.insert(flat.end(), row.begin(), row.end());
  std::vector<double> out(gradients.front().size());
  kernels::pcgrad<double>(Context::cpu(), flat.data(), static_cast<std::int64_t>(gradients.size()),
                          static_cast<std::int64_t>(out.size()), options, out.data());
  return out;
}

std::vector<double> run_cagrad(const std::vector<std::vector<double>>& gradients,
                               const CagradOptions& options = {}) {
  std::vector<double> flat;
  for (const auto& row : gradients) flat.insert(flat.end(), row.begin(), row.end());
  std::vector<double> out(gradients.front().size());
  kernels::cagrad<double>(Context::cpu(), flat.data(), static_cast<std::int64_t>(gradients.size()),
                          static_cast<std::int64_t>(out.size()), options, out.data());
  return out;
}

std::vector<double> gram_of(const std::vector<std::vector<double>>& gradients) {
  const auto tasks = static_cast<std::int64_t>(gradients.size());
  std::vector<double> flat;
  for (const auto& row : gradients) flat.insert(flat.end(), row.begin(), row.end());
  std::vector<double> gram(static_cast<std::size_t>(tasks * tasks), 0.0);
  kernels::accumulate_task_gram<double>(Context::cpu(), flat.data(), tasks,
                                        static_cast<std::int64_t>(gradients.front().size()),
                                        gram.data());
  return gram;
}

void check_vector(const std::vector<double>& actual, const std::vector<double>& expected,
                  double tolerance = 1e-12) {
  REQUIRE(actual.size() == expected.size());
  for (std::size_t i = 0; i < actual.size(); ++i) {
    INFO("entry " << i << ": " << actual[i] << " vs " << expected[i]);
    CHECK(actual[i] == Approx(expected[i]).margin(tolerance));
  }
}

const PcgradOptions kFixedOrder{false, 0};

}  // namespace

TEST_CASE("PCGrad on two conflicting tasks projects each onto the other's normal plane",
          "[surgery][pcgrad]") {
  // g1 = (1, 0), g2 = (-1, 1): g1.g2 = -1 < 0, |g1|^2 = 1, |g2|^2 = 2.
  // g1' = g1 - (-1/2) g2 = (0.5, 0.5)   (g1'.g2 = 0)
  // g2' = g2 - (-1/1) g1 = (0, 1)       (g2'.g1 = 0)
  // sum = (0.5, 1.5). With two tasks the order cannot matter.
  const std::vector<std::vector<double>> gradients{{1, 0}, {-1, 1}};
  check_vector(run_pcgrad(gradients, kFixedOrder), {0.5, 1.5});
  check_vector(run_pcgrad(gradients, {true, 12345}), {0.5, 1.5});
  check_vector(kernels::pcgrad_weights(gram_of(gradients), 2, kFixedOrder), {2.0, 1.5});
}

TEST_CASE("PCGrad leaves cooperating tasks alone and sums them", "[surgery][pcgrad]") {
  // g1 = (1, 0), g2 = (1, 1): g1.g2 = 1 >= 0, nothing projected; sum = (2, 1).
  const std::vector<std::vector<double>> gradients{{1, 0}, {1, 1}};
  check_vector(run_pcgrad(gradients, kFixedOrder), {2, 1});
  // Orthogonal gradients (dot exactly 0) are not conflicting either.
  check_vector(run_pcgrad({{3, 0}, {0, -2}}, kFixedOrder), {3, -2});
}

TEST_CASE("PCGrad on three tasks uses the original g_j and the running g_i", "[surgery][pcgrad]") {
  // g1 = (2, 0), g2 = (-1, 1), g3 = (-1, -2); dots: g1.g2 = -2, g1.g3 = -2, g2.g3 = -1;
  // |g1|^2 = 4, |g2|^2 = 2, |g3|^2 = 5. Fixed order (j increasing):
  // i = 1: j = 2: g1.g2 = -2     -> g1 + (2/2) g2     = (1, 1)
  //        j = 3: (1,1).g3 = -3  -> (1,1) + (3/5) g3  = (0.4, -0.2)
  // i = 2: j = 1: g2.g1 = -2     -> g2 + (2/4) g1     = (0, 1)
  //        j = 3: (0,1).g3 = -2  -> (0,1) + (2/5) g3  = (-0.4, 0.2)
  // i = 3: j = 1: g3.g1 = -2     -> g3 + (2/4) g1     = (0, -2)
  //        j = 2: (0,-2).g2 = -2 -> (0,-2) + (2/2) g2 = (-1, -1)
  // sum = (0.4 - 0.4 - 1, -0.2 + 0.2 - 1) = (-1, -1); as weights on the originals:
  // g1' = g1 + g2 + 0.6 g3, g2' = 0.5 g1 + g2 + 0.4 g3, g3' = 0.5 g1 + g2 + g3 -> (2, 3, 2).
  const std::vector<std::vector<double>> gradients{{2, 0}, {-1, 1}, {-1, -2}};
  check_vector(run_pcgrad(gradients, kFixedOrder), {-1, -1});
  check_vector(kernels::pcgrad_weights(gram_of(gradients), 3, kFixedOrder), {2, 3, 2});

  // With three tasks the order matters: i = 1 with j = 3 first gives
  // g1 + (2/5) g3 = (1.6, -0.8), then (1.6,-0.8).g2 = -2.4 -> + 1.2 g2 = (0.4, 0.4).
  // A seeded shuffle repeats for the same seed, and some seeds differ from the fixed order.
  const auto gram = gram_of(gradients);
  bool some_order_differs = false;
  for (std::uint64_t seed = 0; seed < 16; ++seed) {
    const auto first = kernels::pcgrad_weights(gram, 3, {true, seed});
    const auto again = kernels::pcgrad_weights(gram, 3, {true, seed});
    CHECK(first == again);
    if (std::abs(first[0] - 2) + std::abs(first[1] - 3) + std::abs(first[2] - 2) > 1e-9) {
      some_order_differs = true;
    }
  }
  CHECK(some_order_differs);
}

TEST_CASE("PCGrad with zero gradients", "[surgery][pcgrad]") {
  // A zero g1 conflicts with nothing and nothing is projected onto it: sum = g2.
  check_vector(run_pcgrad({{0, 0}, {1, 2}}, kFixedOrder), {1, 2});
  check_vector(run_pcgrad({{0, 0, 0}, {0, 0, 0}, {0, 0, 0}}, {true, 3}), {0, 0, 0});
}

TEST_CASE("CAGrad on two orthogonal tasks", "[surgery][cagrad]") {
  // g1 = (1, 0), g2 = (0, 1), c = 0.4. By symmetry w* = (1/2, 1/2), so g_w = g0 = (0.5, 0.5),
  // |g0| = sqrt(0.5), s = 0.4 sqrt(0.5), s / |g_w| = 0.4: d = 1.4 g0 = (0.7, 0.7);
  // rescaled by 1 / (1 + 0.16): 0.7 / 1.16 = 0.603448275862069.
  const std::vector<std::vector<double>> gradients{{1, 0}, {0, 1}};
  check_vector(run_cagrad(gradients), {0.7 / 1.16, 0.7 / 1.16});
  const auto solution = kernels::cagrad_solve(gram_of(gradients), 2);
  check_vector(solution.simplex_weights, {0.5, 0.5});
  check_vector(run_cagrad(gradients, {0.4, false}), {0.7, 0.7});
}

TEST_CASE("CAGrad on two conflicting tasks picks the simplex corner", "[surgery][cagrad]") {
  // g1 = (1, 0), g2 = (-1, 1): g0 = (0, 0.5), |g0| = 0.5, s = 0.4 * 0.5 = 0.2.
  // w = (t, 1 - t): g_w = (2t - 1, 1 - t), g_w.g0 = 0.5 (1 - t), |g_w|^2 = 5t^2 - 6t + 2;
  // F(t) = 0.5 - 0.5 t + 0.2 sqrt(5t^2 - 6t + 2),
  // F'(t) = -0.5 + 0.1 (10t - 6) / sqrt(5t^2 - 6t + 2); |0.1 (10t-6) / sqrt(.)| <= 0.2 sqrt(5)
  // < 0.5, so F' < 0 on [0, 1] and t* = 1: g_w = g1, |g_w| = 1.
  // d = g0 + 0.2 g1 = (0.2, 0.5); rescaled: (0.2, 0.5) / 1.16.
  const std::vector<std::vector<double>> gradients{{1, 0}, {-1, 1}};
  check_vector(kernels::cagrad_solve(gram_of(gradients), 2).simplex_weights, {1, 0});
  check_vector(run_cagrad(gradients), {0.2 / 1.16, 0.5 / 1.16});
  // c = 0: plain mean of the task gradients.
  check_vector(run_cagrad(gradients, {0.0, true}), {0, 0.5});
}

TEST_CASE("CAGrad on three orthonormal tasks", "[surgery][cagrad]") {
  // g_i = e_i: G = I, g0 = (1,1,1)/3, F(w) = 1/3 + s |w| is smallest at w = (1,1,1)/3, where
  // g_w = g0 and s / |g_w| = c = 0.4: d = 1.4 g0, rescaled 1.4 / 3 / 1.16 each.
  const std::vector<std::vector<double>> gradients{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}};
  const auto solution = kernels::cagrad_solve(gram_of(gradients), 3);
  check_vector(solution.simplex_weights, {1.0 / 3, 1.0 / 3, 1.0 / 3});
  const double each = 1.4 / 3 / 1.16;
  check_vector(run_cagrad(gradients), {each, each, each});
}

TEST_CASE("CAGrad on three conflicting tasks", "[surgery][cagrad]") {
  // g1 = (1, 0), g2 = (-1, 1), g3 = (-1, -1): g0 = (-1/3, 0), |g0| = 1/3, s = 0.4 / 3.
  // g_i.g0 = (-1/3, 1/3, 1/3). At the corner w = e1 (g_w = g1, |g_w| = 1) the objective's
  // gradient is dF/dw_i = g_i.g0 + s g_i.g1 = (-1/3 + s, 1/3 - s, 1/3 - s) = (-0.2, 0.2, 0.2):
  // the first coordinate is the smallest, so e1 satisfies the simplex optimality conditions of
  // the convex F. d = g0 + s g1 = (-1/3 + 0.4/3, 0) = (-0.2, 0); rescaled (-0.2 / 1.16, 0).
  const std::vector<std::vector<double>> gradients{{1, 0}, {-1, 1}, {-1, -1}};
  check_vector(kernels::cagrad_solve(gram_of(gradients), 3).simplex_weights, {1, 0, 0});
  check_vector(run_cagrad(gradients), {-0.2 / 1.16, 0});
}

TEST_CASE("CAGrad with zero gradients", "[surgery][cagrad]") {
  // All zero: d = 0, no NaN.
  check_vector(run_cagrad({{0, 0}, {0, 0}}), {0, 0});
  check_vector(run_cagrad({{0, 0}, {0, 0}, {0, 0}}), {0, 0});
  // Opposite gradients: g0 = 0, so s = 0 and d = g0 = 0.
  check_vector(run_cagrad({{1, 0}, {-1, 0}}), {0, 0});
  check_vector(run_cagrad({{1, 2}, {-1, -2}, {0, 0}}), {0, 0});
  // One task: d = g + c g = 1.4 g, rescaled by 1 / 1.16.
  check_vector(run_cagrad({{3, -4}}), {3 * 1.4 / 1.16, -4 * 1.4 / 1.16});
}

TEST_CASE("CAGrad solver reaches the grid minimum of its objective", "[surgery][cagrad]") {
  std::mt19937_64 engine(5);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (const std::int64_t tasks : {2, 3}) {
    for (int trial = 0; trial < 20; ++trial) {
      // Random gradients in 4 dimensions, some pulled towards conflict.
      std::vector<std::vector<double>> gradients(static_cast<std::size_t>(tasks),
                                                 std::vector<double>(4));
      for (auto& row : gradients) {
        for (auto& value : row) value = normal(engine);
      }
      if (trial % 2 == 1) {
        for (std::size_t x = 0; x < 4; ++x) gradients[1][x] -= 1.5 * gradients[0][x];
      }
      const auto gram = gram_of(gradients);
      const double c = trial % 3 == 0 ? 1.0 : 0.4;
      const auto solution = kernels::cagrad_solve(gram, tasks, {c, true});
      double total = 0;
      for (double w : solution.simplex_weights) {
        CHECK(w >= 0.0);
        total += w;
      }
      CHECK(total == Approx(1.0).margin(1e-12));
      double grid_best = 1e300;
      const int steps = 400;
      for (int a = 0; a <= steps; ++a) {
        for (int b = 0; b <= (tasks == 3 ? steps - a : 0); ++b) {
          std::vector<double> w{a / double(steps)};
          if (tasks == 2) {
            w.push_back(1 - w[0]);
          } else {
            w.push_back(b / double(steps));
            w.push_back(1 - w[0] - w[1]);
          }
          grid_best = std::min(grid_best, kernels::cagrad_objective(gram, tasks, w, c));
        }
      }
      INFO("tasks " << tasks << " trial " << trial);
      CHECK(solution.objective <= grid_best + 1e-12);
      CHECK(solution.objective ==
            Approx(kernels::cagrad_objective(gram, tasks, solution.simplex_weights, c)));
    }
  }
}

TEST_CASE("CAGrad solver on rank-deficient Gram matrices", "[surgery][cagrad]") {
  // Four tasks in two dimensions, and three with two collinear gradients: faces of the simplex
  // with singular Gram blocks, where the search must fall back on projected gradient descent.
  std::mt19937_64 engine(21);
  std::normal_distribution<double> normal(0.0, 1.0);
  for (int trial = 0; trial < 12; ++trial) {
    const std::int64_t tasks = trial % 2 == 0 ? 4 : 3;
    std::vector<std::vector<double>> gradients(static_cast<std::size_t>(tasks),
                                               std::vector<double>(2));
    for (auto& row : gradients) {
      for (auto& value : row) value = normal(engine);
    }
    if (tasks == 3) gradients[2] = {2 * gradients[0][0], 2 * gradients[0][1]};
    const auto gram = gram_of(gradients);
    const auto solution = kernels::cagrad_solve(gram, tasks);
    double grid_best = 1e300;
    const int steps = 60;
    for (int a = 0; a <= steps; ++a) {
      for (int b = 0; a + b <= steps; ++b) {
        for (int c = 0; a + b + c <= steps; ++c) {
          if (tasks == 3 && a + b + c != steps) continue;
          std::vector<double> w{a / double(steps), b / double(steps), c / double(steps)};
          if (tasks == 4) w.push_back(1 - w[0] - w[1] - w[2]);
          grid_best = std::min(grid_best, kernels::cagrad_objective(gram, tasks, w, 0.4));
        }
      }
    }
    INFO("trial " << trial);
    CHECK(solution.objective <= grid_best + 1e-12);
  }
}

TEST_CASE("Gram matrices of column blocks add up and the combination is a weighted row sum",
          "[surgery]") {
  std::mt19937_64 engine(9);
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  const std::int64_t tasks = 3, n = 10, split = 4;
  std::vector<double> gradients(static_cast<std::size_t>(tasks * n));
  for (auto& value : gradients) value = uniform(engine);
  std::vector<double> expected(static_cast<std::size_t>(tasks * tasks), 0.0);
  for (std::int64_t i = 0; i < tasks; ++i) {
    for (std::int64_t j = 0; j < tasks; ++j) {
      for (std::int64_t x = 0; x < n; ++x) {
        expected[i * tasks + j] += gradients[i * n + x] * gradients[j * n + x];
      }
    }
  }
  // Two parameters: columns [0, split) and [split, n) stored as separate [tasks, width] blocks.
  std::vector<double> left, right;
  for (std::int64_t i = 0; i < tasks; ++i) {
    left.insert(left.end(), gradients.begin() + i * n, gradients.begin() + i * n + split);
    right.insert(right.end(), gradients.begin() + i * n + split, gradients.begin() + (i + 1) * n);
  }
  std::vector<double> gram(static_cast<std::size_t>(tasks * tasks), 0.0);
  kernels::accumulate_task_gram<double>(Context::cpu(), left.data(), tasks, split, gram.data());
  kernels::accumulate_task_gram<double>(Context::cpu(), right.data(), tasks, n - split,
                                        gram.data());
  check_vector(gram, expected, 1e-13);

  const std::vector<double> weights{0.5, -2.0, 1.25};
  std::vector<double> out(static_cast<std::size_t>(n));
  kernels::combine_task_gradients<double>(Context::cpu(), gradients.data(), tasks, n,
                                          weights.data(), out.data());
  for (std::int64_t x = 0; x < n; ++x) {
    CHECK(out[x] ==
          Approx(0.5 * gradients[x] - 2.0 * gradients[n + x] + 1.25 * gradients[2 * n + x]));
  }
}

TEST_CASE("gradient surgery in single precision", "[surgery]") {
  const std::vector<float> gradients{1, 0, -1, 1};
  std::vector<float> out(2);
  kernels::pcgrad<float>(Context::cpu(), gradients.data(), 2, 2, {false, 0}, out.data());
  CHECK(out[0] == Approx(0.5f).epsilon(1e-6));
  CHECK(out[1] == Approx(1.5f).epsilon(1e-6));
  kernels::cagrad<float>(Context::cpu(), gradients.data(), 2, 2, {}, out.data());
  CHECK(out[0] == Approx(0.2f / 1.16f).epsilon(1e-5));
  CHECK(out[1] == Approx(0.5f / 1.16f).epsilon(1e-5));
}

TEST_CASE("gradient surgery rejects bad task counts and radii", "[surgery]") {
  CHECK_THROWS_WITH(kernels::pcgrad_weights({}, 0), Catch::Contains("1 to 64 tasks"));
  CHECK_THROWS_WITH(kernels::pcgrad_weights({1, 0, 0}, 2), Catch::Contains("expected 4"));
  CHECK_THROWS_WITH(kernels::cagrad_solve({1}, 1, {-0.5, true}), Catch::Contains("c must be"));
}
