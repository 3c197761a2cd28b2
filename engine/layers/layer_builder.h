// What a layer needs at construction: the parameter store it registers in, the random source
// for initialisation and the execution context its ops run in.
#pragma once

#include <cmath>
#include <string>
#include <vector>

#include "engine/core/parameter_store.h"
#include "engine/core/random.h"
#include "kernels/core/device.h"

namespace drgrad::engine {

struct LayerBuilder {
  ParameterStore& store;
  Random& random;
  kernels::Context ctx;

  // Xavier/Glorot uniform values for a [fan_in, fan_out] weight (count may cover several).
  template <typename T>
  std::vector<T> xavier_uniform(std::int64_t count, std::int64_t fan_in, std::int64_t fan_out) {
    const double limit = std::sqrt(6.0 / static_cast<double>(fan_in + fan_out));
    std::vector<T> values(static_cast<std::size_t>(count));
    for (auto& value : values) value = static_cast<T>(random.uniform(-limit, limit));
    return values;
  }
};

}  // namespace drgrad::engine
