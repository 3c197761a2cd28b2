// axpy with its scale read from memory (DRGrad's mixing weights, read where the op runs) against
// axpy with the same scale passed by value: the same bits, in float and double.
#include <catch2/catch.hpp>

#include <random>
#include <vector>

#include "kernels/vector/vector_ops.h"

namespace drgrad::kernels {
namespace {

template <typename T>
void check_same_bits_as_axpy(std::mt19937& random, std::int64_t n, double alpha) {
  std::uniform_real_distribution<double> distribution(-3.0, 3.0);
  std::vector<T> x(static_cast<std::size_t>(n)), y(x.size());
  for (auto& value : x) value = static_cast<T>(distribution(random));
  for (auto& value : y) value = static_cast<T>(distribution(random));
  std::vector<T> expected = y;
  axpy<T>(Context::cpu(), n, static_cast<T>(alpha), x.data(), expected.data());
  axpy_scalar_in_memory<T>(Context::cpu(), n, &alpha, x.data(), y.data());
  CHECK(y == expected);
}

TEST_CASE("axpy with the scale in memory equals axpy with the scale by value", "[vector][mixing]") {
  std::mt19937 random(Catch::rngSeed());
  // 0.3 and 1/3 are not floats: the double is rounded to T exactly as the by-value caller does.
  for (const double alpha : {0.5, 0.3, 1.0 / 3.0, -2.75, 0.0}) {
    for (const std::int64_t n : {0, 1, 7, 1000}) {
      check_same_bits_as_axpy<float>(random, n, alpha);
      check_same_bits_as_axpy<double>(random, n, alpha);
    }
  }
}

}  // namespace
}  // namespace drgrad::kernels
