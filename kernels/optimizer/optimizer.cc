// CPU twin of the optimizer steps, the checks of options and sizes, and the dispatch between CPU
// and CUDA.
#include "kernels/optimizer/optimizer.h"

#include <cmath>
#include <initializer_list>
#include <stdexcept>
#include <string>

#include "kernels/core/dispatch.h"

namespace drgrad::kernels {
namespace {

void require(bool condition, const char* op, const std::string& what) {
  if (!condition) throw std::invalid_argument(std::string(op) + ": " + what);
}

std::string describe(const char* name, double value) {
  return std::string(name) + " " + std::to_string(value);
}

void check_learning_rate_and_decay(const char* op, float learning_rate, float weight_decay) {
  require(std::isfinite(learning_rate) && learning_rate >= 0.f, op,
          describe("learning_rate", learning_rate) + " must be finite and non-negative");
  require(std::isfinite(weight_decay) && weight_decay >= 0.f, op,
          describe("weight_decay", weight_decay) + " must be finite and non-negative");
}

void check_options(const char* op, const SgdOptions& options) {
  check_learning_rate_and_decay(op, options.learning_rate, options.weight_decay);
  require(options.momentum >= 0.f && options.momentum < 1.f, op,
          describe("momentum", options.momentum) + " must be in [0, 1)");
}

void check_options(const char* op, const AdamOptions& options, std::int64_t step) {
  check_learning_rate_and_decay(op, options.learning_rate, options.weight_decay);
  require(options.beta1 >= 0.f && options.beta1 < 1.f, op,
          describe("beta1", options.beta1) + " must be in [0, 1)");
  require(options.beta2 >= 0.f && options.beta2 < 1.f, op,
          describe("beta2", options.beta2) + " must be in [0, 1)");
  require(std::isfinite(options.epsilon) && options.epsilon > 0.f, op,
          describe("epsilon", options.epsilon) + " must be finite and positive");
  require(step >= 1, op,
          "step " + std::to_string(step) + " must be at least 1 (the first step is 1)");
}

void check_options(const char* op, const AdagradOptions& options) {
  check_learning_rate_and_decay(op, options.learning_rate, options.weight_decay);
  require(std::isfinite(options.epsilon) && options.epsilon > 0.f, op,
          describe("epsilon", options.epsilon) + " must be finite and positive");
}

void check_dense(const char* op, std::int64_t n, std::initializer_list<const void*> arrays) {
  require(n >= 0, op, "n " + std::to_string(n) + " is negative");
  if (n == 0) return;
  for (const void* array : arrays) {
    require(array != nullptr, op, "a weight, gradient or state array is null");
  }
}

template <typename T>
void check_rows(const char* op, std::int64_t table_rows, const RowSparseGradient<T>& gradient,
                std::initializer_list<const void*> arrays) {
  require(table_rows >= 0, op, "table_rows " + std::to_string(table_rows) + " is negative");
  require(gradient.num_rows >= 0 && gradient.num_rows <= table_rows, op,
          "num_rows " + std::to_string(gradient.num_rows) +
              " must be in [0, table_rows = " + std::to_string(table_rows) + "] (rows are unique)");
  if (gradient.num_rows == 0) return;
  require(gradient.dim >= 1, op, "dim " + std::to_string(gradient.dim) + " must be positive");
  require(gradient.rows != nullptr && gradient.values != nullptr, op,
          "the gradient's rows and values must not be null");
  for (const void* array : arrays) {
    require(array != nullptr, op, "the table or a state array is null");
  }
}

}  // namespace

namespace cpu {
namespace {

// Throws before anything is written, so a bad index leaves the table untouched.
template <typename T>
void check_row_range(const char* op, std::int64_t table_rows,
                     const RowSparseGradient<T>& gradient) {
  for (std::int64_t r = 0; r < gradient.num_rows; ++r) {
    const std::int64_t row = gradient.rows[r];
    if (row < 0 || row >= table_rows) {
      throw std::out_of_range(std::string(op) + ": row index " + std::to_string(row) +
                              " at position " + std::to_string(r) + " is outside the table's " +
                              std::to_string(table_rows) + " rows");
    }
  }
}

template <typename T>
void sgd_element(const SgdOptions& options, T& weight, T gradient, T* velocity) {
  const T regularized = gradient + T(options.weight_decay) * weight;
  if (velocity == nullptr) {
    weight -= T(options.learning_rate) * regularized;
    return;
  }
  *velocity = T(options.momentum) * *velocity + regularized;
  weight -= T(options.learning_rate) * *velocity;
}

// 1 - beta1^t and 1 - beta2^t, computed in double (beta2^t for beta2 near 1 and large t loses
// digits in float).
struct AdamBiasCorrection {
  double first, second;
};
AdamBiasCorrection adam_bias_correction(const AdamOptions& options, std::int64_t step) {
  return {1.0 - std::pow(double(options.beta1), double(step)),
          1.0 - std::pow(double(options.beta2), double(step))};
}

template <typename T>
void adam_element(const AdamOptions& options, T first_correction, T second_correction, T& weight,
                  T gradient, T& first_moment, T& second_moment) {
  first_moment = T(options.beta1) * first_moment + (T(1) - T(options.beta1)) * gradient;
  second_moment =
      T(options.beta2) * second_moment + (T(1) - T(options.beta2)) * gradient * gradient;
  const T first_unbiased = first_moment / first_correction;
  const T second_unbiased = second_moment / second_correction;
  weight -= T(options.learning_rate) *
            (first_unbiased / (std::sqrt(second_unbiased) + T(options.epsilon)) +
             T(options.weight_decay) * weight);
}

template <typename T>
void adagrad_element(const AdagradOptions& options, T& weight, T gradient, T& accumulator) {
  const T regularized = gradient + T(options.weight_decay) * weight;
  accumulator += regularized * regularized;
  weight -= T(options.learning_rate) * regularized / (std::sqrt(accumulator) + T(options.epsilon));
}

}  // namespace

template <typename T>
void sgd_update(const SgdOptions& options, T* weights, const T* gradients, T* velocity,
                std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    sgd_element(options, weights[i], gradients[i], velocity == nullptr ? nullptr : velocity + i);
  }
}

template <typename T>
void sgd_update_rows(const SgdOptions& options, T* table, std::int64_t table_rows,
                     const RowSparseGradient<T>& gradient, T* velocity) {
  check_row_range("sgd_update_rows", table_rows, gradient);
  for (std::int64_t r = 0; r < gradient.num_rows; ++r) {
    const std::int64_t offset = gradient.rows[r] * gradient.dim;
    for (std::int64_t c = 0; c < gradient.dim; ++c) {
      sgd_element(options, table[offset + c], gradient.values[r * gradient.dim + c],
                  velocity == nullptr ? nullptr : velocity + offset + c);
    }
  }
}

template <typename T>
void adam_update(const AdamOptions& options, std::int64_t step, T* weights, const T* gradients,
                 T* first_moment, T* second_moment, std::int64_t n) {
  const AdamBiasCorrection correction = adam_bias_correction(options, step);
  for (std::int64_t i = 0; i < n; ++i) {
    adam_element(options, T(correction.first), T(correction.second), weights[i], gradients[i],
                 first_moment[i], second_moment[i]);
  }
}

template <typename T>
void adam_update_rows(const AdamOptions& options, std::int64_t step, T* table,
                      std::int64_t table_rows, const RowSparseGradient<T>& gradient,
                      T* first_moment, T* second_moment) {
  check_row_range("adam_update_rows", table_rows, gradient);
  const AdamBiasCorrection correction = adam_bias_correction(options, step);
  for (std::int64_t r = 0; r < gradient.num_rows; ++r) {
    const std::int64_t offset = gradient.rows[r] * gradient.dim;
    for (std::int64_t c = 0; c < gradient.dim; ++c) {
      adam_element(options, T(correction.first), T(correction.second), table[offset + c],
                   gradient.values[r * gradient.dim + c], first_moment[offset + c],
                   second_moment[offset + c]);
    }
  }
}

template <typename T>
void adagrad_update(const AdagradOptions& options, T* weights, const T* gradients, T* accumulator,
                    std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    adagrad_element(options, weights[i], gradients[i], accumulator[i]);
  }
}

template <typename T>
void adagrad_update_rows(const AdagradOptions& options, T* table, std::int64_t table_rows,
                         const RowSparseGradient<T>& gradient, T* accumulator) {
  check_row_range("adagrad_update_rows", table_rows, gradient);
  for (std::int64_t r = 0; r < gradient.num_rows; ++r) {
    const std::int64_t offset = gradient.rows[r] * gradient.dim;
    for (std::int64_t c = 0; c < gradient.dim; ++c) {
      adagrad_element(options, table[offset + c], gradient.values[r * gradient.dim + c],
                      accumulator[offset + c]);
    }
  }
}

#define DRGRAD_INSTANTIATE_CPU_OPTIMIZERS(T)                                              \
  template void sgd_update<T>(const SgdOptions&, T*, const T*, T*, std::int64_t);         \
  template void sgd_update_rows<T>(const SgdOptions&, T*, std::int64_t,                   \
                                   const RowSparseGradient<T>&, T*);                      \
  template void adam_update<T>(const AdamOptions&, std::int64_t, T*, const T*, T*, T*,    \
                               std::int64_t);                                             \
  template void adam_update_rows<T>(const AdamOptions&, std::int64_t, T*, std::int64_t,   \
                                    const RowSparseGradient<T>&, T*, T*);                 \
  template void adagrad_update<T>(const AdagradOptions&, T*, const T*, T*, std::int64_t); \
  template void adagrad_update_rows<T>(const AdagradOptions&, T*, std::int64_t,           \
                                       const RowSparseGradient<T>&, T*);
DRGRAD_INSTANTIATE_CPU_OPTIMIZERS(float)
DRGRAD_INSTANTIATE_CPU_OPTIMIZERS(double)
#undef DRGRAD_INSTANTIATE_CPU_OPTIMIZERS
}  // namespace cpu

template <typename T>
void sgd_update(const Context& ctx, const SgdOptions& options, T* weights, const T* gradients,
                T* velocity, std::int64_t n) {
  check_options("sgd_update", options);
  check_dense("sgd_update", n, {weights, gradients});
  require(velocity != nullptr || options.momentum == 0.f || n == 0, "sgd_update",
          "momentum is non-zero but no velocity array was given");
  DRGRAD_DISPATCH(T, ctx, sgd_update, options, weights, gradients, velocity, n);
}

template <typename T>
void sgd_update_rows(const Context& ctx, const SgdOptions& options, T* table,
                     std::int64_t table_rows, const RowSparseGradient<T>& gradient, T* velocity) {
  check_options("sgd_update_rows", options);
  check_rows("sgd_update_rows", table_rows, gradient, {table});
  require(velocity != nullptr || options.momentum == 0.f || gradient.num_rows == 0,
          "sgd_update_rows", "momentum is non-zero but no velocity array was given");
  DRGRAD_DISPATCH(T, ctx, sgd_update_rows, options, table, table_rows, gradient, velocity);
}

template <typename T>
void adam_update(const Context& ctx, const AdamOptions& options, std::int64_t step, T* weights,
                 const T* gradients, T* first_moment, T* second_moment, std::int64_t n) {
  check_options("adam_update", options, step);
  check_dense("adam_update", n, {weights, gradients, first_moment, second_moment});
  DRGRAD_DISPATCH(T, ctx, adam_update, options, step, weights, gradients, first_moment,
                  second_moment, n);
}

template <typename T>
void adam_update_rows(const Context& ctx, const AdamOptions& options, std::int64_t step, T* table,
                      std::int64_t table_rows, const RowSparseGradient<T>& gradient,
                      T* first_moment, T* second_moment) {
  check_options("adam_update_rows", options, step);
  check_rows("adam_update_rows", table_rows, gradient, {table, first_moment, second_moment});
  DRGRAD_DISPATCH(T, ctx, adam_update_rows, options, step, table, table_rows, gradient,
                  first_moment, second_moment);
}

template <typename T>
void adagrad_update(const Context& ctx, const AdagradOptions& options, T* weights,
                    const T* gradients, T* accumulator, std::int64_t n) {
  check_options("adagrad_update", options);
  check_dense("adagrad_update", n, {weights, gradients, accumulator});
  DRGRAD_DISPATCH(T, ctx, adagrad_update, options, weights, gradients, accumulator, n);
}

template <typename T>
void adagrad_update_rows(const Context& ctx, const AdagradOptions& options, T* table,
                         std::int64_t table_rows, const RowSparseGradient<T>& gradient,
                         T* accumulator) {
  check_options("adagrad_update_rows", options);
  check_rows("adagrad_update_rows", table_rows, gradient, {table, accumulator});
  DRGRAD_DISPATCH(T, ctx, adagrad_update_rows, options, table, table_rows, gradient, accumulator);
}

#define DRGRAD_INSTANTIATE_OPTIMIZERS(T)                                                           \
  template void sgd_update<T>(const Context&, const SgdOptions&, T*, const T*, T*, std::int64_t);  \
  template void sgd_update_rows<T>(const Context&, const SgdOptions&, T*, std::int64_t,            \
                                   const RowSparseGradient<T>&, T*);                               \
  template void adam_update<T>(const Context&, const AdamOptions&, std::int64_t, T*, const T*, T*, \
                               T*, std::int64_t);                                                  \
  template void adam_update_rows<T>(const Context&, const AdamOptions&, std::int64_t, T*,          \
                                    std::int64_t, const RowSparseGradient<T>&, T*, T*);            \
  template void adagrad_update<T>(const Context&, const AdagradOptions&, T*, const T*, T*,         \
                                  std::int64_t);                                                   \
  template void adagrad_update_rows<T>(const Context&, const AdagradOptions&, T*, std::int64_t,    \
                                       const RowSparseGradient<T>&, T*);
DRGRAD_INSTANTIATE_OPTIMIZERS(float)
DRGRAD_INSTANTIATE_OPTIMIZERS(double)
#undef DRGRAD_INSTANTIATE_OPTIMIZERS

}  // namespace drgrad::kernels
