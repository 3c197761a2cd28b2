// Vector and statistics helpers for the synthetic data generators.
#include "io/generators/generator_support.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace drgrad::io {

double dot(std::span<const double> a, std::span<const double> b) {
  double sum = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) sum += a[i] * b[i];
  return sum;
}

double euclidean_norm(std::span<const double> a) {
  return std::sqrt(dot(a, a));
}

std::vector<double> random_unit_vector(DeterministicRandom& random, std::int64_t dimension) {
  std::vector<double> vector(static_cast<std::size_t>(dimension));
  // A Gaussian vector has a uniformly distributed direction; redraw the (practically
  // impossible) zero vector.
  double norm = 0.0;
  while (norm == 0.0) {
    for (double& value : vector) value = random.normal();
    norm = euclidean_norm(vector);
  }
  for (double& value : vector) value /= norm;
  return vector;
}

double median_of(std::vector<double> values) {
  if (values.empty()) throw std::invalid_argument("median_of: no values");
  const std::size_t middle = values.size() / 2;
  std::nth_element(values.begin(), values.begin() + middle, values.end());
  const double upper = values[middle];
  if (values.size() % 2 == 1) return upper;
  const double lower = *std::max_element(values.begin(), values.begin() + middle);
  return 0.5 * (lower + upper);
}

std::string indexed_name(const std::string& prefix, std::int64_t index) {
  // Appending (rather than prefix + std::to_string) sidesteps a GCC 12 -O3 false -Wrestrict.
  std::string name = prefix;
  name += std::to_string(index);
  return name;
}

void require_option(bool holds, const std::string& generator, const std::string& field,
                    const std::string& requirement, const std::string& got) {
  if (!holds) {
    throw std::invalid_argument(generator + ": " + field + " must be " + requirement + ", got " +
                                got);
  }
}

}  // namespace drgrad::io
