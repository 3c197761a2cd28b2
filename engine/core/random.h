// Seeded random numbers that are identical on every platform and compiler (std distributions are
// implementation-defined, so we derive uniforms and normals from the raw 64-bit engine ourselves).
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <sstream>
#include <string>

namespace drgrad::engine {

class Random {
 public:
  explicit Random(std::uint64_t seed = 1) : engine_(seed) {}

  std::uint64_t next_u64() { return engine_(); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(engine_() >> 11) * 0x1.0p-53; }
  double uniform(double low, double high) { return low + (high - low) * uniform(); }
  // Standard normal by Box-Muller (one value per call; the pair's second half is discarded so
  // that the state is a function of the number of calls only).
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  // Uniform integer in [0, n).
  std::uint64_t below(std::uint64_t n) { return n == 0 ? 0 : engine_() % n; }

  // The full engine state as text, for checkpoints.
  std::string state() const {
    std::ostringstream out;
    out << engine_;
    return out.str();
  }
  void set_state(const std::string& text) {
    std::istringstream in(text);
    in >> engine_;
  }

 private:
  std::mt19937_64 engine_;
};

}  // namespace drgrad::engine
