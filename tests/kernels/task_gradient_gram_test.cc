// CPU twin of kernels/multitask/task_gradient_gram.h against plain loops in double: the per-task
// weight and bias gradients with beta 0, 1 and 0.5, the Gram matrix of the FINAL gradients
// (separate or shared targets, added or overwritten), awkward shapes (batch 1, sizes that are
// not multiples of the CUDA tile, K = 1, 2, 4), an input whose Gram is exact, and the
// device-side Gram accumulation.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/multitask/gradient_surgery.h"
#include "kernels/multitask/task_gradient_gram.h"

namespace {

namespace kernels = drgrad::kernels;
using kernels::GramUpdate;
using kernels::TaskGradientShape;
using kernels::TaskGradientTargets;

struct Reference {
  std::vector<double> weight, bias;            // [K, in, out], [K, out]
  std::vector<double> weight_gram, bias_gram;  // K x K each
};

// dW_k = beta dW_k + X^T dY_k, db_k = beta db_k + column sums, and their Gram matrices, all in
// double with the obvious loops.
template <typename T>
Reference naive(const TaskGradientShape& s, const std::vector<T>& x, const std::vector<T>& dy,
                double beta, const std::vector<T>& weight_start, const std::vector<T>& bias_start) {
  const std::int64_t K = s.tasks, B = s.batch, in = s.in_features, out = s.out_features;
  Reference r;
  r.weight.assign(static_cast<std::size_t>(K * in * out), 0.0);
  r.bias.assign(static_cast<std::size_t>(K * out), 0.0);
  for (std::int64_t k = 0; k < K; ++k) {
    for (std::int64_t i = 0; i < in; ++i) {
      for (std::int64_t j = 0; j < out; ++j) {
        double total = beta == 0 ? 0.0 : beta * double(weight_start[(k * in + i) * out + j]);
        for (std::int64_t b = 0; b < B; ++b) {
          total += double(x[b * in + i]) * double(dy[(k * B + b) * out + j]);
        }
        r.weight[(k * in + i) * out + j] = total;
      }
    }
    for (std::int64_t j = 0; j < out; ++j) {
      double total = beta == 0 ? 0.0 : beta * double(bias_start[k * out + j]);
      for (std::int64_t b = 0; b < B; ++b) total += double(dy[(k * B + b) * out + j]);
      r.bias[k * out + j] = total;
    }
  }
  auto gram = [K](const std::vector<double>& rows) {
    const auto n = static_cast<std::int64_t>(rows.size()) / K;
    std::vector<double> g(static_cast<std::size_t>(K * K), 0.0);
    for (std::int64_t a = 0; a < K; ++a) {
      for (std::int64_t c = 0; c < K; ++c) {
        for (std::int64_t e = 0; e < n; ++e) g[a * K + c] += rows[a * n + e] * rows[c * n + e];
      }
    }
    return g;
  };
  r.weight_gram = gram(r.weight);
  r.bias_gram = gram(r.bias);
  return r;
}

template <typename T>
std::vector<T> random_vector(std::mt19937& random, std::size_t n) {
  std::uniform_real_distribution<double> distribution(-1.0, 1.0);
  std::vector<T> values(n);
  for (auto& v : values) v = static_cast<T>(distribution(random));
  return values;
}

// |a - b| <= tolerance * (1 + |b|) element by element.
template <typename T>
void check_values(const std::vector<T>& actual, const std::vector<double>& expected,
                  double tolerance, const std::string& what) {
  REQUIRE(actual.size() == expected.size());
  for (std::size_t e = 0; e < actual.size(); ++e) {
    INFO(what << " element " << e << ": " << double(actual[e]) << " expected " << expected[e]);
    CHECK(std::abs(double(actual[e]) - expected[e]) <= tolerance * (1.0 + std::abs(expected[e])));
  }
}

// Gram entries are compared on the scale of Cauchy-Schwarz, sqrt(G_ii G_jj): an off-diagonal
// entry can cancel to near zero, where a relative test would demand more than the data holds.
void check_gram(const std::vector<double>& actual, const std::vector<double>& expected,
                std::int64_t K, double tolerance, const std::string& what) {
  REQUIRE(actual.size() == expected.size());
  for (std::int64_t i = 0; i < K; ++i) {
    for (std::int64_t j = 0; j < K; ++j) {
      const double scale = std::sqrt(expected[i * K + i] * expected[j * K + j]);
      INFO(what << " (" << i << ", " << j << "): " << actual[i * K + j] << " expected "
                << expected[i * K + j]);
      CHECK(std::abs(actual[i * K + j] - expected[i * K + j]) <= tolerance * (1.0 + scale));
    }
  }
}

template <typename T>
void check_against_naive(const TaskGradientShape& shape, double beta, std::mt19937& random,
                         double tolerance) {
  const std::int64_t K = shape.tasks;
  const auto x = random_vector<T>(random, shape.batch * shape.in_features);
  const auto dy = random_vector<T>(random, K * shape.batch * shape.out_features);
  auto weight_start = random_vector<T>(random, K * shape.in_features * shape.out_features);
  auto bias_start = random_vector<T>(random, K * shape.out_features);
  if (beta == 0) {  // beta = 0 must ignore whatever was there, NaN included
    for (auto& v : weight_start) v = std::numeric_limits<T>::quiet_NaN();
    for (auto& v : bias_start) v = std::numeric_limits<T>::quiet_NaN();
  }
  const Reference expected = naive(shape, x, dy, beta, weight_start, bias_start);
  const std::string where = "K=" + std::to_string(K) + " batch=" + std::to_string(shape.batch) +
                            " in=" + std::to_string(shape.in_features) +
                            " out=" + std::to_string(shape.out_features) +
                            " beta=" + std::to_string(beta);

  SECTION("separate Gram targets, overwritten") {
    auto weight = weight_start;
    auto bias = bias_start;
    std::vector<double> weight_gram(K * K, 123.0), bias_gram(K * K, -7.0);
    kernels::task_gradients_with_gram<T>(
        kernels::Context::cpu(), shape, x.data(), dy.data(), T(beta),
        {weight.data(), bias.data(), weight_gram.data(), bias_gram.data()}, GramUpdate::kOverwrite);
    check_values(weight, expected.weight, tolerance, "weight " + where);
    check_values(bias, expected.bias, tolerance, "bias " + where);
    check_gram(weight_gram, expected.weight_gram, K, tolerance, "weight Gram " + where);
    check_gram(bias_gram, expected.bias_gram, K, tolerance, "bias Gram " + where);
  }
  SECTION("one shared Gram target, added") {
    auto weight = weight_start;
    auto bias = bias_start;
    std::vector<double> start(K * K);
    for (std::int64_t e = 0; e < K * K; ++e) start[e] = 0.25 * double(e % K + e / K);  // symmetric
    auto gram = start;
    kernels::task_gradients_with_gram<T>(
        kernels::Context::cpu(), shape, x.data(), dy.data(), T(beta),
        {weight.data(), bias.data(), gram.data(), gram.data()}, GramUpdate::kAdd);
    std::vector<double> expected_gram(K * K);
    for (std::int64_t e = 0; e < K * K; ++e) {
      expected_gram[e] = start[e] + expected.weight_gram[e] + expected.bias_gram[e];
    }
    std::vector<double> gradient_only(K * K);
    for (std::int64_t e = 0; e < K * K; ++e) {
      gradient_only[e] = gram[e] - start[e];
      expected_gram[e] -= start[e];
    }
    check_gram(gradient_only, expected_gram, K, tolerance, "shared Gram " + where);
  }
  SECTION("no bias, no Gram") {
    auto weight = weight_start;
    kernels::task_gradients_with_gram<T>(kernels::Context::cpu(), shape, x.data(), dy.data(),
                                         T(beta), {weight.data(), nullptr, nullptr, nullptr},
                                         GramUpdate::kAdd);
    check_values(weight, expected.weight, tolerance, "weight " + where);
  }
}

}  // namespace

TEST_CASE("per-task gradients with their Gram matrix match plain loops (double)",
          "[kernels][task_gram]") {
  std::mt19937 random(2026);
  for (const std::int64_t tasks : {1, 2, 4}) {
    for (const TaskGradientShape& size :
         {TaskGradientShape{0, 1, 37, 45}, TaskGradientShape{0, 7, 5, 3},
          TaskGradientShape{0, 33, 64, 31}, TaskGradientShape{0, 50, 1, 1}}) {
      for (const double beta : {0.0, 1.0, 0.5}) {
        TaskGradientShape shape = size;
        shape.tasks = tasks;
        // The same products as the loops in another order: a few roundings of double.
        check_against_naive<double>(shape, beta, random, 1e-12);
      }
    }
  }
}

TEST_CASE("per-task gradients with their Gram matrix match plain loops (float)",
          "[kernels][task_gram]") {
  std::mt19937 random(7);
  for (const std::int64_t tasks : {1, 2, 4}) {
    for (const TaskGradientShape& size :
         {TaskGradientShape{0, 1, 37, 45}, TaskGradientShape{0, 40, 33, 17}}) {
      for (const double beta : {0.0, 1.0}) {
        TaskGradientShape shape = size;
        shape.tasks = tasks;
        // fp32 sums of at most 40 terms of magnitude <= 1 against double: 1e-5 of (1 + |value|)
        // is far above their rounding (~40 * 6e-8) and far below any indexing mistake.
        check_against_naive<float>(shape, beta, random, 1e-5);
      }
    }
  }
}

TEST_CASE("Gram of small integer gradients is exact", "[kernels][task_gram]") {
  // Integers: every product and sum is exact in float and double, so the result must equal the
  // plain loops bit for bit.
  const TaskGradientShape shape{3, 4, 3, 2};
  std::vector<float> x(4 * 3), dy(3 * 4 * 2);
  for (std::size_t e = 0; e < x.size(); ++e) x[e] = float(int(e % 5) - 2);
  for (std::size_t e = 0; e < dy.size(); ++e) dy[e] = float(int((e * 7) % 9) - 4);
  std::vector<float> weight(3 * 3 * 2, 0.f), bias(3 * 2, 0.f);
  std::vector<double> gram(9, 0.0);
  kernels::task_gradients_with_gram<float>(kernels::Context::cpu(), shape, x.data(), dy.data(), 0.f,
                                           {weight.data(), bias.data(), gram.data(), gram.data()},
                                           GramUpdate::kOverwrite);
  const Reference expected = naive(shape, x, dy, 0.0, weight, bias);
  for (std::size_t e = 0; e < weight.size(); ++e) CHECK(double(weight[e]) == expected.weight[e]);
  for (std::size_t e = 0; e < bias.size(); ++e) CHECK(double(bias[e]) == expected.bias[e]);
  for (std::size_t e = 0; e < gram.size(); ++e) {
    CHECK(gram[e] == expected.weight_gram[e] + expected.bias_gram[e]);
  }
  // Symmetric with a positive diagonal (no task gradient is zero here).
  for (int i = 0; i < 3; ++i) {
    CHECK(gram[i * 3 + i] > 0);
    for (int j = 0; j < 3; ++j) CHECK(gram[i * 3 + j] == gram[j * 3 + i]);
  }
}

TEST_CASE("an empty batch scales by beta and gives the Gram of what is left",
          "[kernels][task_gram]") {
  const TaskGradientShape shape{2, 0, 2, 3};
  std::vector<double> weight{1, 2, 3, 4, 5, 6, -1, -2, -3, -4, -5, -6};
  std::vector<double> bias{1, 1, 1, 2, 2, 2};
  std::vector<double> gram(4, 0.0);
  kernels::task_gradients_with_gram<double>(kernels::Context::cpu(), shape, nullptr, nullptr, 2.0,
                                            {weight.data(), bias.data(), gram.data(), nullptr},
                                            GramUpdate::kOverwrite);
  CHECK(weight[0] == 2.0);
  CHECK(weight[11] == -12.0);
  CHECK(bias[3] == 4.0);
  // Row 0 = 2 (1..6), row 1 = -row 0: |row|^2 = 4 * 91.
  CHECK(gram == std::vector<double>{364.0, -364.0, -364.0, 364.0});
}

TEST_CASE("the Gram matrix stays on the device side and is read once", "[kernels][task_gram]") {
  std::mt19937 random(3);
  for (const std::int64_t tasks : {1, 3, 9}) {  // 9: above the fused kernel's register limit
    const std::int64_t n = 101;
    const auto rows = random_vector<double>(random, tasks * n);
    std::vector<double> host(tasks * tasks, 0.5), device_side(tasks * tasks, 0.5);
    kernels::accumulate_task_gram<double>(kernels::Context::cpu(), rows.data(), tasks, n,
                                          host.data());
    kernels::accumulate_task_gram_on_device<double>(kernels::Context::cpu(), rows.data(), tasks, n,
                                                    device_side.data());
    CHECK(device_side == host);  // the same pass on the CPU: the same bits
    std::vector<double> sum(tasks * tasks, 1.0);
    kernels::add_task_gram(kernels::Context::cpu(), device_side.data(), tasks, sum.data());
    std::vector<double> read(tasks * tasks, -1.0);
    kernels::read_task_gram(kernels::Context::cpu(), sum.data(), tasks, read.data());
    for (std::int64_t e = 0; e < tasks * tasks; ++e) CHECK(read[e] == 1.0 + host[e]);
  }
  CHECK_THROWS_AS(kernels::accumulate_task_gram_on_device<double>(kernels::Context::cpu(), nullptr,
                                                                  0, 1, nullptr),
                  std::invalid_argument);
  CHECK_THROWS_AS(kernels::task_gradients_with_gram<double>(kernels::Context::cpu(),
                                                            TaskGradientShape{2, -1, 1, 1}, nullptr,
                                                            nullptr, 0.0, {}, GramUpdate::kAdd),
                  std::invalid_argument);
}

TEST_CASE("the Gram path setting round-trips", "[kernels][task_gram]") {
  const auto before = kernels::task_gram_path();
  kernels::set_task_gram_path(kernels::TaskGramPath::kBatchedGemmThenGram);
  CHECK(kernels::task_gram_path() == kernels::TaskGramPath::kBatchedGemmThenGram);
  kernels::set_task_gram_path(before);
  CHECK(kernels::task_gram_path() == before);
}
