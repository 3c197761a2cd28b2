// CPU twin of the optimizer steps, the checks of options and sizes, and the dispatch between CPU
// and CUDA.
#include "kernels/optimizer/optimizer.h"

#include <cmath>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

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

}  // namespace

template <typename T>
void fused_dense_update(const UpdateRule& rule, const DenseUpdateSegment<T>* segments,
                        std::int64_t num_segments, const std::int64_t* skip) {
  if (skip != nullptr && *skip != 0) return;
  for (std::int64_t s = 0; s < num_segments; ++s) {
    const DenseUpdateSegment<T>& segment = segments[s];
    for (std::int64_t i = 0; i < segment.n; ++i) {
      apply_update_rule(rule, segment.weights[i], segment.gradients[i],
                        segment.state_a == nullptr ? nullptr : segment.state_a + i,
                        segment.state_b == nullptr ? nullptr : segment.state_b + i);
    }
  }
}

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
  if (gradient.skip != nullptr && *gradient.skip != 0) return;
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
  if (gradient.skip != nullptr && *gradient.skip != 0) return;
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
  if (gradient.skip != nullptr && *gradient.skip != 0) return;
  for (std::int64_t r = 0; r < gradient.num_rows; ++r) {
    const std::int64_t offset = gradient.rows[r] * gradient.dim;
    for (std::int64_t c = 0; c < gradient.dim; ++c) {
      adagrad_element(options, table[offset + c], gradient.values[r * gradient.dim + c],
                      accumulator[offset + c]);
    }
  }
}

#define DRGRAD_INSTANTIATE_CPU_OPTIMIZERS(T)                                              \
  template void fused_dense_update<T>(const UpdateRule&, const DenseUpdateSegment<T>*,    \
                                      std::int64_t, const std::int64_t*);                 \
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

void check_update_rule(const char* op, const UpdateRule& rule) {
  switch (rule.kind) {
    case UpdateKind::kSgd:
      check_options(op, rule.sgd);
      return;
    case UpdateKind::kAdam:
      check_options(op, rule.adam, 1);
      require(rule.adam_correction.first > 0 && rule.adam_correction.second > 0, op,
              "Adam's bias corrections must be positive (build the rule with adam_rule)");
      return;
    case UpdateKind::kAdagrad:
      check_options(op, rule.adagrad);
      return;
  }
  throw std::invalid_argument(std::string(op) + ": unknown update rule");
}

template <typename T>
DenseUpdateTable<T> make_dense_update_table(Device device,
                                            std::vector<DenseUpdateSegment<T>> segments) {
  std::int64_t offset = 0;
  for (std::size_t s = 0; s < segments.size(); ++s) {
    require(
        segments[s].n >= 0, "make_dense_update_table",
        "segment " + std::to_string(s) + " has negative length " + std::to_string(segments[s].n));
    segments[s].offset = offset;
    offset += segments[s].n;
  }
  return DenseUpdateTable<T>(device, std::move(segments));
}

template <typename T>
void fused_dense_update(const Context& ctx, const UpdateRule& rule,
                        const DenseUpdateTable<T>& table, const std::int64_t* skip) {
  const char* op = "fused_dense_update";
  check_update_rule(op, rule);
  require(table.empty() || table.device() == ctx.device, op,
          "the segment table lives on " + table.device().to_string() + " but the update runs on " +
              ctx.device.to_string() + "; build the table for the context's device");
  std::int64_t total = 0;
  for (std::size_t s = 0; s < table.host().size(); ++s) {
    const DenseUpdateSegment<T>& segment = table.host()[s];
    total += segment.n;
    if (segment.n == 0) continue;
    const std::string where = "segment " + std::to_string(s) + ": ";
    require(segment.weights != nullptr && segment.gradients != nullptr, op,
            where + "weights and gradients must not be null");
    const bool needs_a = rule.kind != UpdateKind::kSgd || rule.sgd.momentum != 0.f;
    require(!needs_a || segment.state_a != nullptr, op,
            where + "the rule's first state array (velocity, first moment or accumulator) is null");
    require(rule.kind != UpdateKind::kAdam || segment.state_b != nullptr, op,
            where + "Adam's second moment is null");
  }
  if (ctx.device.is_cuda()) {
    if constexpr (std::is_same_v<T, float>) {
      DRGRAD_CUDA_TWIN(
          cuda::fused_dense_update(ctx, rule, table.data(), table.size(), total, skip));
      return;
    } else {
      throw_double_on_cuda(op);
    }
  }
  cpu::fused_dense_update(rule, table.data(), table.size(), skip);
}

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
  template DenseUpdateTable<T> make_dense_update_table<T>(Device,                                  \
                                                          std::vector<DenseUpdateSegment<T>>);     \
  template void fused_dense_update<T>(const Context&, const UpdateRule&,                           \
                                      const DenseUpdateTable<T>&, const std::int64_t*);            \
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
