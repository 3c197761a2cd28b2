// Row-sparse optimizer updates whose number of touched rows lives in device memory (as the device
// embedding backward plan leaves it), for one table or for every embedding table of a model in one
// pass, so that a training step need not read the count back to the host. Same rules and bits as
// the row updates of kernels/optimizer/optimizer.h.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/core/device.h"
#include "kernels/core/device_table.h"
#include "kernels/optimizer/update_rules.h"

namespace drgrad::kernels {

// The gradient of a [table_rows, dim] row-major table that is zero outside a few rows, with the
// number of those rows known only on the device. Arrays are sized for `capacity` rows (the host's
// bound, e.g. the batch's id count): rows[capacity] and values[capacity * dim], of which the first
// *num_rows_device are the touched rows (unique, in [0, table_rows), any order) and their gradient
// rows; the entries beyond are never read. num_rows_device: one int64 in the context's device
// memory. skip: null, or a count in device memory; when non-zero at the time the update runs,
// nothing is written (as RowSparseGradient::skip).
template <typename T>
struct DeviceCountRowGradient {
  const std::int64_t* rows = nullptr;
  const T* values = nullptr;
  const std::int64_t* num_rows_device = nullptr;
  std::int64_t capacity = 0;
  std::int64_t dim = 0;
  const std::int64_t* skip = nullptr;
};

// Lazy updates as sgd_update_rows / adam_update_rows / adagrad_update_rows (optimizer.h): only the
// first *num_rows_device listed rows of the table and its state change, each exactly as the row
// update with the count on the host would change it (the same per-element functions, so on the CPU
// the same bits). On CUDA the launch covers the capacity and threads beyond the count return.
// The dispatching functions check options, sizes and pointers on the host (std::invalid_argument);
// they cannot check the count. The CPU twin reads the count through the pointer and throws
// std::out_of_range, before writing anything, for a count outside [0, capacity] or a row outside
// the table; the CUDA twin clamps the count to [0, capacity] and trusts the rows.
template <typename T>
void sgd_update_rows_device_count(const Context& ctx, const SgdOptions& options, T* table,
                                  std::int64_t table_rows,
                                  const DeviceCountRowGradient<T>& gradient, T* velocity);
template <typename T>
void adam_update_rows_device_count(const Context& ctx, const AdamOptions& options,
                                   std::int64_t step, T* table, std::int64_t table_rows,
                                   const DeviceCountRowGradient<T>& gradient, T* first_moment,
                                   T* second_moment);
template <typename T>
void adagrad_update_rows_device_count(const Context& ctx, const AdagradOptions& options, T* table,
                                      std::int64_t table_rows,
                                      const DeviceCountRowGradient<T>& gradient, T* accumulator);

// One table of a multi-table row update: the table and its state arrays (state_a the velocity,
// first moment or accumulator; state_b Adam's second moment; null where the rule has none), the
// touched rows and their gradient with the count in device memory (as DeviceCountRowGradient),
// and offset, capacity * dim summed over the segments before it (make_row_update_table fills it
// in; the CUDA kernel spreads the elements of all tables evenly over its threads with it).
template <typename T>
struct RowUpdateSegment {
  T* table = nullptr;
  std::int64_t table_rows = 0;
  std::int64_t dim = 0;
  const std::int64_t* rows = nullptr;
  const T* values = nullptr;
  const std::int64_t* num_rows_device = nullptr;
  std::int64_t capacity = 0;
  T* state_a = nullptr;
  T* state_b = nullptr;
  std::int64_t offset = 0;
};
template <typename T>
using RowUpdateTable = DeviceTable<RowUpdateSegment<T>>;

// Fills in the offsets and mirrors the segments on `device` (kernels/core/device_table.h). Keep it
// while the arrays stay where they are; the counts may change from step to step without a rebuild,
// since only their addresses are in the table. Throws std::invalid_argument for a negative
// capacity or, where the capacity is positive, a dimension below 1.
template <typename T>
RowUpdateTable<T> make_row_update_table(Device device, std::vector<RowUpdateSegment<T>> segments);

// Updates the touched rows of every segment under `rule` in one pass (one launch on CUDA, over
// the segments' capacities; the CPU twin walks the segments in order and each one's rows in
// order), with the bits of one *_update_rows_device_count per segment. skip as
// fused_dense_update's: null, or a count in device memory that vetoes the whole pass when it is
// non-zero as the pass runs. Throws std::invalid_argument when a segment with a positive capacity
// lacks an array its rule needs, an option is out of range, or the table lives on another device.
template <typename T>
void fused_row_update(const Context& ctx, const UpdateRule& rule, const RowUpdateTable<T>& table,
                      const std::int64_t* skip = nullptr);

namespace cpu {
// Both take checked segments; they read each count through its pointer.
template <typename T>
void fused_row_update(const UpdateRule& rule, const RowUpdateSegment<T>* segments,
                      std::int64_t num_segments, const std::int64_t* skip);
}  // namespace cpu

namespace cuda {
// segments: the table's device copy; total_capacity_elements: the sum of capacity * dim (the
// launch's size, known on the host).
void fused_row_update(const Context& ctx, const UpdateRule& rule,
                      const RowUpdateSegment<float>* segments, std::int64_t num_segments,
                      std::int64_t total_capacity_elements, const std::int64_t* skip);
// One segment passed by value (no table on the device): the single-table updates above.
void update_rows_device_count(const Context& ctx, const UpdateRule& rule,
                              const RowUpdateSegment<float>& segment, const std::int64_t* skip);
}  // namespace cuda

}  // namespace drgrad::kernels
