// CPU twin of the row-sparse updates with a device-side row count, the checks of their arguments
// and the dispatch between CPU and CUDA.
#include "kernels/optimizer/row_update.h"

#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "kernels/core/dispatch.h"
#include "kernels/optimizer/optimizer.h"

namespace drgrad::kernels {
namespace {

void require(bool condition, const char* op, const std::string& what) {
  if (!condition) throw std::invalid_argument(std::string(op) + ": " + what);
}

// Everything about a segment that the host can check without reading device memory.
template <typename T>
void check_segment(const char* op, const UpdateRule& rule, const RowUpdateSegment<T>& segment,
                   const std::string& where) {
  require(segment.table_rows >= 0, op,
          where + "table_rows " + std::to_string(segment.table_rows) + " is negative");
  require(segment.capacity >= 0, op,
          where + "capacity " + std::to_string(segment.capacity) + " is negative");
  if (segment.capacity == 0) return;
  require(segment.dim >= 1, op, where + "dim " + std::to_string(segment.dim) + " must be positive");
  require(segment.table != nullptr, op, where + "the table is null");
  require(
      segment.rows != nullptr && segment.values != nullptr && segment.num_rows_device != nullptr,
      op, where + "the gradient's rows, values and row count must not be null");
  const bool needs_a = rule.kind != UpdateKind::kSgd || rule.sgd.momentum != 0.f;
  require(!needs_a || segment.state_a != nullptr, op,
          where + "the rule's first state array (velocity, first moment or accumulator) is null");
  require(rule.kind != UpdateKind::kAdam || segment.state_b != nullptr, op,
          where + "Adam's second moment is null");
}

template <typename T>
RowUpdateSegment<T> segment_of(T* table, std::int64_t table_rows,
                               const DeviceCountRowGradient<T>& gradient, T* state_a, T* state_b) {
  RowUpdateSegment<T> segment;
  segment.table = table;
  segment.table_rows = table_rows;
  segment.dim = gradient.dim;
  segment.rows = gradient.rows;
  segment.values = gradient.values;
  segment.num_rows_device = gradient.num_rows_device;
  segment.capacity = gradient.capacity;
  segment.state_a = state_a;
  segment.state_b = state_b;
  return segment;
}

// One table, checked, then to the twin of the context's device.
template <typename T>
void update_one_table(const char* op, const Context& ctx, const UpdateRule& rule,
                      const RowUpdateSegment<T>& segment, const std::int64_t* skip) {
  check_update_rule(op, rule);
  check_segment(op, rule, segment, "");
  if (segment.capacity == 0) return;
  if (ctx.device.is_cuda()) {
    if constexpr (std::is_same_v<T, float>) {
      DRGRAD_CUDA_TWIN(cuda::update_rows_device_count(ctx, rule, segment, skip));
      return;
    } else {
      throw_double_on_cuda(op);
    }
  }
  cpu::fused_row_update(rule, &segment, 1, skip);
}

}  // namespace

namespace cpu {

template <typename T>
void fused_row_update(const UpdateRule& rule, const RowUpdateSegment<T>* segments,
                      std::int64_t num_segments, const std::int64_t* skip) {
  // Every count and row is checked before anything is written, so a bad one leaves every table
  // untouched.
  for (std::int64_t s = 0; s < num_segments; ++s) {
    const RowUpdateSegment<T>& segment = segments[s];
    if (segment.capacity == 0) continue;
    const std::int64_t count = *segment.num_rows_device;
    if (count < 0 || count > segment.capacity) {
      throw std::out_of_range(
          "fused_row_update: segment " + std::to_string(s) + " has " + std::to_string(count) +
          " touched rows, outside [0, capacity = " + std::to_string(segment.capacity) + "]");
    }
    for (std::int64_t r = 0; r < count; ++r) {
      const std::int64_t row = segment.rows[r];
      if (row < 0 || row >= segment.table_rows) {
        throw std::out_of_range("fused_row_update: segment " + std::to_string(s) + ": row index " +
                                std::to_string(row) + " at position " + std::to_string(r) +
                                " is outside the table's " + std::to_string(segment.table_rows) +
                                " rows");
      }
    }
  }
  if (skip != nullptr && *skip != 0) return;
  for (std::int64_t s = 0; s < num_segments; ++s) {
    const RowUpdateSegment<T>& segment = segments[s];
    if (segment.capacity == 0) continue;
    const std::int64_t count = *segment.num_rows_device;
    for (std::int64_t r = 0; r < count; ++r) {
      const std::int64_t offset = segment.rows[r] * segment.dim;
      for (std::int64_t c = 0; c < segment.dim; ++c) {
        apply_update_rule(rule, segment.table[offset + c], segment.values[r * segment.dim + c],
                          segment.state_a == nullptr ? nullptr : segment.state_a + offset + c,
                          segment.state_b == nullptr ? nullptr : segment.state_b + offset + c);
      }
    }
  }
}

template void fused_row_update<float>(const UpdateRule&, const RowUpdateSegment<float>*,
                                      std::int64_t, const std::int64_t*);
template void fused_row_update<double>(const UpdateRule&, const RowUpdateSegment<double>*,
                                       std::int64_t, const std::int64_t*);

}  // namespace cpu

template <typename T>
void sgd_update_rows_device_count(const Context& ctx, const SgdOptions& options, T* table,
                                  std::int64_t table_rows,
                                  const DeviceCountRowGradient<T>& gradient, T* velocity) {
  update_one_table("sgd_update_rows_device_count", ctx, sgd_rule(options),
                   segment_of(table, table_rows, gradient, velocity, static_cast<T*>(nullptr)),
                   gradient.skip);
}

template <typename T>
void adam_update_rows_device_count(const Context& ctx, const AdamOptions& options,
                                   std::int64_t step, T* table, std::int64_t table_rows,
                                   const DeviceCountRowGradient<T>& gradient, T* first_moment,
                                   T* second_moment) {
  require(step >= 1, "adam_update_rows_device_count",
          "step " + std::to_string(step) + " must be at least 1 (the first step is 1)");
  update_one_table("adam_update_rows_device_count", ctx, adam_rule(options, step),
                   segment_of(table, table_rows, gradient, first_moment, second_moment),
                   gradient.skip);
}

template <typename T>
void adagrad_update_rows_device_count(const Context& ctx, const AdagradOptions& options, T* table,
                                      std::int64_t table_rows,
                                      const DeviceCountRowGradient<T>& gradient, T* accumulator) {
  update_one_table("adagrad_update_rows_device_count", ctx, adagrad_rule(options),
                   segment_of(table, table_rows, gradient, accumulator, static_cast<T*>(nullptr)),
                   gradient.skip);
}

template <typename T>
RowUpdateTable<T> make_row_update_table(Device device, std::vector<RowUpdateSegment<T>> segments) {
  std::int64_t offset = 0;
  for (std::size_t s = 0; s < segments.size(); ++s) {
    const std::string where = "segment " + std::to_string(s) + ": ";
    require(segments[s].capacity >= 0, "make_row_update_table",
            where + "capacity " + std::to_string(segments[s].capacity) + " is negative");
    require(segments[s].capacity == 0 || segments[s].dim >= 1, "make_row_update_table",
            where + "dim " + std::to_string(segments[s].dim) + " must be positive");
    segments[s].offset = offset;
    offset += segments[s].capacity * segments[s].dim;
  }
  return RowUpdateTable<T>(device, std::move(segments));
}

template <typename T>
void fused_row_update(const Context& ctx, const UpdateRule& rule, const RowUpdateTable<T>& table,
                      const std::int64_t* skip) {
  const char* op = "fused_row_update";
  check_update_rule(op, rule);
  require(table.empty() || table.device() == ctx.device, op,
          "the segment table lives on " + table.device().to_string() + " but the update runs on " +
              ctx.device.to_string() + "; build the table for the context's device");
  std::int64_t total = 0;
  for (std::size_t s = 0; s < table.host().size(); ++s) {
    const RowUpdateSegment<T>& segment = table.host()[s];
    check_segment(op, rule, segment, "segment " + std::to_string(s) + ": ");
    total += segment.capacity * segment.dim;
  }
  if (total == 0) return;
  if (ctx.device.is_cuda()) {
    if constexpr (std::is_same_v<T, float>) {
      DRGRAD_CUDA_TWIN(cuda::fused_row_update(ctx, rule, table.data(), table.size(), total, skip));
      return;
    } else {
      throw_double_on_cuda(op);
    }
  }
  cpu::fused_row_update(rule, table.data(), table.size(), skip);
}

#define DRGRAD_INSTANTIATE_ROW_UPDATES(T)                                                          \
  template void sgd_update_rows_device_count<T>(                                                   \
      const Context&, const SgdOptions&, T*, std::int64_t, const DeviceCountRowGradient<T>&, T*);  \
  template void adam_update_rows_device_count<T>(const Context&, const AdamOptions&, std::int64_t, \
                                                 T*, std::int64_t,                                 \
                                                 const DeviceCountRowGradient<T>&, T*, T*);        \
  template void adagrad_update_rows_device_count<T>(const Context&, const AdagradOptions&, T*,     \
                                                    std::int64_t,                                  \
                                                    const DeviceCountRowGradient<T>&, T*);         \
  template RowUpdateTable<T> make_row_update_table<T>(Device, std::vector<RowUpdateSegment<T>>);   \
  template void fused_row_update<T>(const Context&, const UpdateRule&, const RowUpdateTable<T>&,   \
                                    const std::int64_t*);
DRGRAD_INSTANTIATE_ROW_UPDATES(float)
DRGRAD_INSTANTIATE_ROW_UPDATES(double)
#undef DRGRAD_INSTANTIATE_ROW_UPDATES

}  // namespace drgrad::kernels
