// Small vector and statistics helpers shared by the synthetic data generators.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "io/generators/deterministic_random.h"

namespace drgrad::io {

double dot(std::span<const double> a, std::span<const double> b);
double euclidean_norm(std::span<const double> a);
// A direction drawn uniformly from the unit sphere in R^dimension.
std::vector<double> random_unit_vector(DeterministicRandom& random, std::int64_t dimension);
// The median of `values` (the mean of the two middle values for an even count). Takes a copy
// because it reorders. Throws std::invalid_argument on an empty input.
double median_of(std::vector<double> values);
// prefix followed by the decimal index, e.g. indexed_name("x", 3) == "x3".
std::string indexed_name(const std::string& prefix, std::int64_t index);
// Throws std::invalid_argument("<generator>: <field> must be ..., got <value>") unless holds.
void require_option(bool holds, const std::string& generator, const std::string& field,
                    const std::string& requirement, const std::string& got);

}  // namespace drgrad::io
