// In-place optimizer steps (SGD with momentum, AdamW, Adagrad) on flat parameter arrays, on a
// subset of the rows of an embedding table whose gradient is given compactly, row by row, and on
// a whole group of dense parameters in one multi-tensor pass. The rules themselves (options and
// per-element arithmetic) are in update_rules.h. Optimizer state (velocity, moments,
// accumulators) is allocated, initialized and kept by the caller; these functions only read and
// write it.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/core/device.h"
#include "kernels/core/device_table.h"
#include "kernels/optimizer/update_rules.h"

namespace drgrad::kernels {

// The gradient of a [table_rows, dim] row-major table that is zero outside a few rows:
// values[r * dim + c] is the gradient of table[rows[r] * dim + c]. `rows` holds num_rows unique
// indices in [0, table_rows), in any order (duplicates would race on CUDA and double-apply on
// the CPU: sum them first). The CPU twin checks the range and throws std::out_of_range; the
// CUDA twin trusts it. skip: null, or a count in the context's device memory (say, of non-finite
// losses); when it is non-zero at the time the update runs, nothing is written (as the skip of
// fused_dense_update).
template <typename T>
struct RowSparseGradient {
  const std::int64_t* rows = nullptr;
  const T* values = nullptr;
  std::int64_t num_rows = 0;
  std::int64_t dim = 0;
  const std::int64_t* skip = nullptr;
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

// One dense parameter of a multi-tensor update: its weights, gradients and state arrays (state_a
// the velocity, first moment or accumulator; state_b Adam's second moment; null where the rule
// has none), its length n, and offset, the number of elements of the segments before it
// (make_dense_update_table fills it in; kernels use it to spread elements evenly over threads).
template <typename T>
struct DenseUpdateSegment {
  T* weights = nullptr;
  const T* gradients = nullptr;
  T* state_a = nullptr;
  T* state_b = nullptr;
  std::int64_t n = 0;
  std::int64_t offset = 0;
};
template <typename T>
using DenseUpdateTable = DeviceTable<DenseUpdateSegment<T>>;

// Fills in the offsets and mirrors the segments on `device`. Build it once per group and keep it
// while the parameters' arrays stay where they are (the engine's optimizer rebuilds it only when
// a pointer or a length changes). Throws std::invalid_argument for a negative length.
template <typename T>
DenseUpdateTable<T> make_dense_update_table(Device device,
                                            std::vector<DenseUpdateSegment<T>> segments);

// Updates every segment of `table` under `rule`, in one pass (one launch on CUDA; the CPU twin
// walks the segments in order). Both twins use the per-element functions of the single-array
// steps, so on a given device the result has the bits of one sgd_update / adam_update /
// adagrad_update per segment.
// skip: null, or a count or flag in the context's device memory (the trainer passes the loss's
// count of non-finite sample losses); when it is non-zero at the time the pass
// runs, nothing is written. It lets a step that never synchronizes with the host refuse an update
// that a device-side check (say, a non-finite loss) has vetoed; null means always update.
// Throws std::invalid_argument when a segment lacks an array its rule needs or an option is out
// of range; the table must live on ctx.device.
template <typename T>
void fused_dense_update(const Context& ctx, const UpdateRule& rule,
                        const DenseUpdateTable<T>& table, const std::int64_t* skip = nullptr);

// Checks an update rule's options as the single-array steps do (std::invalid_argument naming the
// option); `op` names the caller in the message.
void check_update_rule(const char* op, const UpdateRule& rule);

namespace cpu {
template <typename T>
void fused_dense_update(const UpdateRule& rule, const DenseUpdateSegment<T>* segments,
                        std::int64_t num_segments, const std::int64_t* skip);
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
void fused_dense_update(const Context& ctx, const UpdateRule& rule,
                        const DenseUpdateSegment<float>* segments, std::int64_t num_segments,
                        std::int64_t total_elements, const std::int64_t* skip);
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
