// In-place optimizer steps (SGD with momentum, AdamW, Adagrad) on flat parameter arrays, and on a
// subset of the rows of an embedding table whose gradient is given compactly, row by row.
// Optimizer state (velocity, moments, accumulators) is allocated, initialized and kept by the
// caller; these functions only read and write it.
#pragma once

#include <cstdint>

#include "kernels/core/device.h"

namespace drgrad::kernels {

// v = momentum v + (g + weight_decay w);  w -= learning_rate v.
// weight_decay is plain L2 regularization (added to the gradient, so it also enters the
// velocity). momentum = 0 is plain SGD.
struct SgdOptions {
  float learning_rate = 0.01f;
  float momentum = 0.f;
  float weight_decay = 0.f;
};

// AdamW (Adam with decoupled weight decay, Loshchilov & Hutter), at step t >= 1:
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   m_hat = m / (1 - beta1^t);  v_hat = v / (1 - beta2^t)
//   w -= learning_rate (m_hat / (sqrt(v_hat) + epsilon) + weight_decay w)
// The decay uses w before the step and never enters the moments; weight_decay = 0 is Adam.
struct AdamOptions {
  float learning_rate = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float epsilon = 1e-8f;
  float weight_decay = 0.f;
};

// g' = g + weight_decay w (L2);  accumulator += g'^2;  w -= learning_rate g' / (sqrt(acc) + eps).
// The accumulator's initial value is whatever the caller fills it with (0 in PyTorch, 0.1 in
// TensorFlow); a positive start keeps the first steps from being of size ~learning_rate.
struct AdagradOptions {
  float learning_rate = 0.01f;
  float epsilon = 1e-10f;
  float weight_decay = 0.f;
};

// The gradient of a [table_rows, dim] row-major table that is zero outside a few rows:
// values[r * dim + c] is the gradient of table[rows[r] * dim + c]. `rows` holds num_rows unique
// indices in [0, table_rows), in any order (duplicates would race on CUDA and double-apply on
// the CPU: sum them first). The CPU twin checks the range and throws std::out_of_range; the
// CUDA twin trusts it.
template <typename T>
struct RowSparseGradient {
  const std::int64_t* rows = nullptr;
  const T* values = nullptr;
  std::int64_t num_rows = 0;
  std::int64_t dim = 0;
};

// Row-sparse updates are lazy: only the listed rows of the table and of its state change. Rows
// absent from a step keep their weights and state as they are (no momentum carry-over, no moment
// decay, no weight decay); each listed row is updated exactly as the dense rule would update it.
// Adam's bias correction uses the global step t for every row (as TensorFlow's LazyAdam does),
// not a per-row count of updates.

// All arrays live on the context's device; weights, gradients and state hold n elements (dense)
// or table_rows * dim elements (rows). The dispatching functions check the options and sizes
// and throw std::invalid_argument with the offending value; the twins assume checked arguments.

// velocity may be nullptr only when momentum == 0.
template <typename T>
void sgd_update(const Context& ctx, const SgdOptions& options, T* weights, const T* gradients,
                T* velocity, std::int64_t n);
template <typename T>
void sgd_update_rows(const Context& ctx, const SgdOptions& options, T* table,
                     std::int64_t table_rows, const RowSparseGradient<T>& gradient, T* velocity);

// step is the 1-based count of optimizer steps taken, including this one.
template <typename T>
void adam_update(const Context& ctx, const AdamOptions& options, std::int64_t step, T* weights,
                 const T* gradients, T* first_moment, T* second_moment, std::int64_t n);
template <typename T>
void adam_update_rows(const Context& ctx, const AdamOptions& options, std::int64_t step, T* table,
                      std::int64_t table_rows, const RowSparseGradient<T>& gradient,
                      T* first_moment, T* second_moment);

template <typename T>
void adagrad_update(const Context& ctx, const AdagradOptions& options, T* weights,
                    const T* gradients, T* accumulator, std::int64_t n);
template <typename T>
void adagrad_update_rows(const Context& ctx, const AdagradOptions& options, T* table,
                         std::int64_t table_rows, const RowSparseGradient<T>& gradient,
                         T* accumulator);

namespace cpu {
template <typename T>
void sgd_update(const SgdOptions& options, T* weights, const T* gradients, T* velocity,
                std::int64_t n);
template <typename T>
void sgd_update_rows(const SgdOptions& options, T* table, std::int64_t table_rows,
                     const RowSparseGradient<T>& gradient, T* velocity);
template <typename T>
void adam_update(const AdamOptions& options, std::int64_t step, T* weights, const T* gradients,
                 T* first_moment, T* second_moment, std::int64_t n);
template <typename T>
void adam_update_rows(const AdamOptions& options, std::int64_t step, T* table,
                      std::int64_t table_rows, const RowSparseGradient<T>& gradient,
                      T* first_moment, T* second_moment);
template <typename T>
void adagrad_update(const AdagradOptions& options, T* weights, const T* gradients, T* accumulator,
                    std::int64_t n);
template <typename T>
void adagrad_update_rows(const AdagradOptions& options, T* table, std::int64_t table_rows,
                         const RowSparseGradient<T>& gradient, T* accumulator);
}  // namespace cpu

namespace cuda {
void sgd_update(const Context& ctx, const SgdOptions& options, float* weights,
                const float* gradients, float* velocity, std::int64_t n);
void sgd_update_rows(const Context& ctx, const SgdOptions& options, float* table,
                     std::int64_t table_rows, const RowSparseGradient<float>& gradient,
                     float* velocity);
void adam_update(const Context& ctx, const AdamOptions& options, std::int64_t step, float* weights,
                 const float* gradients, float* first_moment, float* second_moment, std::int64_t n);
void adam_update_rows(const Context& ctx, const AdamOptions& options, std::int64_t step,
                      float* table, std::int64_t table_rows,
                      const RowSparseGradient<float>& gradient, float* first_moment,
                      float* second_moment);
void adagrad_update(const Context& ctx, const AdagradOptions& options, float* weights,
                    const float* gradients, float* accumulator, std::int64_t n);
void adagrad_update_rows(const Context& ctx, const AdagradOptions& options, float* table,
                         std::int64_t table_rows, const RowSparseGradient<float>& gradient,
                         float* accumulator);
}  // namespace cuda

}  // namespace drgrad::kernels
