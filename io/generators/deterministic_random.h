// Random numbers for the data generators that come out the same on every platform and compiler:
// std::mt19937_64 (fully specified by the standard) plus our own uniform and normal transforms,
// because the std:: distributions are implementation-defined.
#pragma once

#include <cstdint>
#include <random>

namespace drgrad::io {

// A seeded stream of uniform and standard-normal doubles. Two instances built from the same seed
// return the same sequence. The transforms use only std::log, std::sqrt, std::cos and std::sin,
// which IEEE-754 platforms compute to within an ulp, so data agree across platforms to that
// precision and bit for bit on the same C library.
class DeterministicRandom {
 public:
  explicit DeterministicRandom(std::uint64_t seed) : engine_(seed) {}

  // Raw 64 random bits.
  std::uint64_t next_bits() { return engine_(); }
  // Uniform on [0, 1), 53 random bits.
  double uniform();
  // Uniform on (0, 1]: safe to take a logarithm of.
  double uniform_positive();
  // Standard normal N(0, 1) by the Box-Muller transform; values come in pairs, the second is
  // kept for the next call.
  double normal();
  double normal(double mean, double stddev) { return mean + stddev * normal(); }

 private:
  std::mt19937_64 engine_;
  bool has_spare_normal_ = false;
  double spare_normal_ = 0.0;
};

// An independent seed for sub-stream `stream` of `seed` (splitmix64 mixing), so that e.g. the
// task parameters and the samples of a generator do not share one sequence.
std::uint64_t derive_seed(std::uint64_t seed, std::uint64_t stream);

// P(Z <= z) for Z ~ N(0, 1).
double standard_normal_cdf(double z);

// The equal-probability bucket of a standard-normal value: floor(buckets * Phi(z)), clamped to
// [0, buckets - 1]. Ids of N(0, 1) inputs are therefore uniform over the buckets.
std::int64_t normal_quantile_bucket(double z, std::int64_t buckets);

}  // namespace drgrad::io
