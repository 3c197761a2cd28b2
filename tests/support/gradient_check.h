// Finite-difference gradient checking in double precision, shared by the layer and model tests.
// The checked function is L = sum(output * upstream) for a fixed random `upstream`, so the
// analytic gradient is what backward() produces from d_output = upstream.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "engine/core/parameter_store.h"
#include "engine/core/random.h"

namespace drgrad::testing {

using engine::Parameter;
using engine::ParameterStore;
using engine::Tensor;

inline std::vector<double> random_values(engine::Random& random, std::size_t n,
                                         double scale = 1.0) {
  std::vector<double> values(n);
  for (auto& v : values) v = scale * random.uniform(-1.0, 1.0);
  return values;
}

inline double weighted_sum(const Tensor& output, const std::vector<double>& upstream) {
  const auto values = output.to_vector<double>();
  double total = 0;
  for (std::size_t i = 0; i < values.size(); ++i) total += values[i] * upstream[i];
  return total;
}

inline bool gradients_close(double analytic, double numeric, double tolerance = 1e-6) {
  return std::abs(analytic - numeric) <=
         tolerance * std::max({1.0, std::abs(analytic), std::abs(numeric)});
}

// Checks every parameter of `store` (up to `samples_per_parameter` entries each, spread over the
// tensor). `loss` runs the forward pass and returns L; `backward` runs forward + backward so that
// the store holds the analytic gradients. Row-sparse parameters: entries of rows the batch did not
// touch must have a zero numeric gradient.
inline void check_parameter_gradients(ParameterStore& store, const std::function<double()>& loss,
                                      const std::function<void()>& backward,
                                      int samples_per_parameter = 12, double epsilon = 1e-6,
                                      const std::function<bool(const Parameter&)>& include = {}) {
  store.zero_gradients();
  backward();
  for (const auto& parameter_pointer : store.all()) {
    Parameter& parameter = *parameter_pointer;
    if (include && !include(parameter)) continue;
    std::vector<double> analytic(static_cast<std::size_t>(parameter.value.numel()), 0.0);
    if (parameter.row_sparse) {
      const auto rows = parameter.gradient.defined() ? parameter.gradient.to_vector<double>()
                                                     : std::vector<double>{};
      const std::int64_t dim = parameter.value.dim(1);
      const std::vector<std::int64_t> touched_rows = parameter.read_touched_rows();
      for (std::size_t r = 0; r < touched_rows.size(); ++r) {
        for (std::int64_t j = 0; j < dim; ++j) {
          analytic[touched_rows[r] * dim + j] = rows[r * dim + j];
        }
      }
    } else {
      analytic = parameter.gradient.to_vector<double>();
    }
    auto values = parameter.value.to_vector<double>();
    const std::int64_t n = parameter.value.numel();
    const std::int64_t step = std::max<std::int64_t>(1, n / samples_per_parameter);
    for (std::int64_t i = 0; i < n; i += step) {
      const double original = values[i];
      values[i] = original + epsilon;
      parameter.value.copy_from(Tensor::from_vector<double>(parameter.value.shape(), values));
      const double plus = loss();
      values[i] = original - epsilon;
      parameter.value.copy_from(Tensor::from_vector<double>(parameter.value.shape(), values));
      const double minus = loss();
      values[i] = original;
      parameter.value.copy_from(Tensor::from_vector<double>(parameter.value.shape(), values));
      const double numeric = (plus - minus) / (2 * epsilon);
      INFO("parameter " << parameter.name << " entry " << i << ": analytic " << analytic[i]
                        << ", numeric " << numeric);
      CHECK(gradients_close(analytic[i], numeric));
    }
  }
}

// Checks d loss / d input for an input given as host values; `loss_of` evaluates L for input
// values, `analytic` is the gradient backward() returned.
inline void check_input_gradient(std::vector<double> input,
                                 const std::function<double(const std::vector<double>&)>& loss_of,
                                 const std::vector<double>& analytic, double epsilon = 1e-6) {
  REQUIRE(analytic.size() == input.size());
  const std::size_t step = std::max<std::size_t>(1, input.size() / 24);
  for (std::size_t i = 0; i < input.size(); i += step) {
    const double original = input[i];
    input[i] = original + epsilon;
    const double plus = loss_of(input);
    input[i] = original - epsilon;
    const double minus = loss_of(input);
    input[i] = original;
    const double numeric = (plus - minus) / (2 * epsilon);
    INFO("input entry " << i << ": analytic " << analytic[i] << ", numeric " << numeric);
    CHECK(gradients_close(analytic[i], numeric));
  }
}

}  // namespace drgrad::testing
