// Uniform and normal transforms over std::mt19937_64, written out so results do not depend on
// the standard library's distribution implementations.
#include "io/generators/deterministic_random.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace drgrad::io {

double DeterministicRandom::uniform() {
  // The top 53 bits give every double of the form k / 2^53 with equal probability.
  return static_cast<double>(engine_() >> 11) * 0x1.0p-53;
}

double DeterministicRandom::uniform_positive() {
  return (static_cast<double>(engine_() >> 11) + 1.0) * 0x1.0p-53;
}

double DeterministicRandom::normal() {
  if (has_spare_normal_) {
    has_spare_normal_ = false;
    return spare_normal_;
  }
  const double radius = std::sqrt(-2.0 * std::log(uniform_positive()));
  const double angle = 2.0 * std::numbers::pi * uniform();
  spare_normal_ = radius * std::sin(angle);
  has_spare_normal_ = true;
  return radius * std::cos(angle);
}

std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t state = seed ^ (0x9e3779b97f4a7c15ULL * (stream + 1));
  state = (state ^ (state >> 30)) * 0xbf58476d1ce4e5b9ULL;
  state = (state ^ (state >> 27)) * 0x94d049bb133111ebULL;
  return state ^ (state >> 31);
}

double standard_normal_cdf(double z) {
  return 0.5 * std::erfc(-z / std::numbers::sqrt2);
}

std::int64_t normal_quantile_bucket(double z, std::int64_t buckets) {
  const auto bucket =
      static_cast<std::int64_t>(std::floor(static_cast<double>(buckets) * standard_normal_cdf(z)));
  return std::clamp<std::int64_t>(bucket, 0, buckets - 1);
}

}  // namespace drgrad::io
