// Embedding bags: id mapping on the host, the per-batch backward plan on the host or on the
// device (kernels/embedding/embedding_plan.h), pooling through kernels/embedding.
#include "engine/layers/embedding.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "kernels/embedding/embedding_plan.h"
#include "kernels/vector/vector_ops.h"

namespace drgrad::engine {

std::int64_t hashed_row(std::int64_t id, std::int64_t vocabulary_size) {
  if (id >= 0 && id < vocabulary_size) return id;
  // splitmix64 finaliser: spreads nearby ids over the whole table.
  std::uint64_t z = static_cast<std::uint64_t>(id) + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<std::int64_t>(z % static_cast<std::uint64_t>(vocabulary_size));
}

template <typename T>
EmbeddingBag<T>::EmbeddingBag(LayerBuilder& builder, const EmbeddingSlotSpec& spec)
    : ctx_(builder.ctx), spec_(spec) {
  if (spec.vocabulary_size <= 0) {
    throw std::invalid_argument("sparse slot '" + spec.name +
                                "' has no vocabulary size; set features.slot vocabulary_size");
  }
  std::vector<T> initial(static_cast<std::size_t>(spec.vocabulary_size * spec.dim));
  for (auto& value : initial) value = static_cast<T>(builder.random.uniform(-0.05, 0.05));
  table_ = &builder.store.add<T>("embeddings/" + spec.name, "embeddings",
                                 {spec.vocabulary_size, spec.dim}, initial, true);
}

template <typename T>
void EmbeddingBag<T>::build_host_plan(const std::vector<std::int64_t>& rows,
                                      const std::vector<std::int64_t>& offsets, std::int64_t batch,
                                      Device device) {
  const auto num_ids = static_cast<std::int64_t>(rows.size());
  // Distinct rows, and for each the samples that hold it (in sample order): positions ordered
  // by row, stably. Small vocabularies use a counting sort (O(ids + vocabulary)).
  std::vector<std::int64_t> order(rows.size());
  if (spec_.vocabulary_size <= 2 * num_ids + 1024) {
    std::vector<std::int64_t> starts(static_cast<std::size_t>(spec_.vocabulary_size) + 1, 0);
    for (const std::int64_t row : rows) ++starts[row + 1];
    for (std::size_t r = 1; r < starts.size(); ++r) starts[r] += starts[r - 1];
    for (std::int64_t i = 0; i < num_ids; ++i) order[starts[rows[i]]++] = i;
  } else {
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](std::int64_t a, std::int64_t b) { return rows[a] < rows[b]; });
  }
  std::vector<std::int64_t> sample_of(rows.size());
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t i = offsets[b]; i < offsets[b + 1]; ++i) sample_of[i] = b;
  }
  unique_rows_.clear();
  std::vector<std::int64_t> occurrence_offsets{0}, occurrence_samples;
  occurrence_samples.reserve(rows.size());
  for (std::size_t k = 0; k < order.size(); ++k) {
    const std::int64_t row = rows[order[k]];
    if (unique_rows_.empty() || unique_rows_.back() != row) {
      if (!unique_rows_.empty()) {
        occurrence_offsets.push_back(static_cast<std::int64_t>(occurrence_samples.size()));
      }
      unique_rows_.push_back(row);
    }
    occurrence_samples.push_back(sample_of[order[k]]);
  }
  if (!unique_rows_.empty()) {
    occurrence_offsets.push_back(static_cast<std::int64_t>(occurrence_samples.size()));
  }
  occurrence_offsets_ =
      Tensor::from_vector<std::int64_t>({static_cast<std::int64_t>(occurrence_offsets.size())},
                                        occurrence_offsets)
          .to(device);
  occurrence_samples_ = Tensor::from_vector<std::int64_t>({num_ids}, occurrence_samples).to(device);
  touched_rows_resolved_ = false;
}

template <typename T>
void EmbeddingBag<T>::build_device_plan(Device device) {
  const std::int64_t num_ids = num_ids_;
  distinct_rows_ = Tensor(Shape{num_ids}, DType::kInt64, device);
  occurrence_offsets_ = Tensor(Shape{num_ids + 1}, DType::kInt64, device);
  occurrence_samples_ = Tensor(Shape{num_ids}, DType::kInt64, device);
  num_distinct_ = Tensor(Shape{1}, DType::kInt64, device);
  kernels::EmbeddingBackwardPlan plan;
  plan.distinct_rows = distinct_rows_.data<std::int64_t>();
  plan.occurrence_offsets = occurrence_offsets_.data<std::int64_t>();
  plan.occurrence_samples = occurrence_samples_.data<std::int64_t>();
  plan.num_distinct = num_distinct_.data<std::int64_t>();
  if (spec_.backward == EmbeddingBackward::kFastNondeterministic) {
    distinct_index_of_position_ = Tensor(Shape{num_ids}, DType::kInt64, device);
    plan.distinct_index_of_position = distinct_index_of_position_.data<std::int64_t>();
  }
  kernels::build_embedding_backward_plan(ctx_, rows_.data<std::int64_t>(),
                                         offsets_.data<std::int64_t>(), batch_, num_ids,
                                         spec_.vocabulary_size, plan);
  unique_rows_.clear();
  touched_rows_resolved_ = false;
}

template <typename T>
std::int64_t EmbeddingBag<T>::prepare_touched_rows() {
  if (spec_.backward != EmbeddingBackward::kHostPlan) {
    // The device plan's distinct rows and count stay where the plan put them: the gradient and
    // the optimizer's row update work at the capacity and read the count on the device.
    touched_rows_device_ = distinct_rows_;
    return num_ids_;
  }
  if (!touched_rows_resolved_) {
    // Count and rows in one upload: [count, row 0, row 1, ...].
    const auto count = static_cast<std::int64_t>(unique_rows_.size());
    std::vector<std::int64_t> count_and_rows;
    count_and_rows.reserve(unique_rows_.size() + 1);
    count_and_rows.push_back(count);
    count_and_rows.insert(count_and_rows.end(), unique_rows_.begin(), unique_rows_.end());
    const Tensor uploaded =
        Tensor::from_vector<std::int64_t>({count + 1}, count_and_rows).to(rows_.device());
    num_distinct_ = uploaded.narrow_first(0, 1);
    touched_rows_device_ = uploaded.narrow_first(1, count);
    touched_rows_resolved_ = true;
  }
  return static_cast<std::int64_t>(unique_rows_.size());
}

template <typename T>
Tensor EmbeddingBag<T>::row_gradient_buffer(Shape shape, Device device) const {
  // With a device plan the deterministic backward writes only the rows below the device count;
  // the rest must be zero for whoever reduces over the whole buffer (gradient surgery's Gram).
  // The atomic backward zeroes its buffer itself, the host plan has no rows past the count.
  if (spec_.backward == EmbeddingBackward::kDevicePlan) {
    return Tensor::zeros(shape, dtype_of<T>(), device);
  }
  return Tensor(shape, dtype_of<T>(), device);
}

template <typename T>
void EmbeddingBag<T>::write_row_gradients(const T* d_out, std::int64_t width, std::int64_t capacity,
                                          T* row_gradients) {
  switch (spec_.backward) {
    case EmbeddingBackward::kFastNondeterministic:
      kernels::embedding_bag_backward_atomic<T>(
          ctx_, d_out, width, spec_.dim, offsets_.data<std::int64_t>(), batch_, spec_.pooling,
          distinct_index_of_position_.data<std::int64_t>(), num_ids_, capacity, row_gradients);
      return;
    case EmbeddingBackward::kDevicePlan:
      kernels::embedding_bag_backward_with_device_count<T>(
          ctx_, d_out, width, spec_.dim, offsets_.data<std::int64_t>(), spec_.pooling,
          occurrence_offsets_.data<std::int64_t>(), occurrence_samples_.data<std::int64_t>(),
          num_distinct_.data<std::int64_t>(), capacity, row_gradients);
      return;
    case EmbeddingBackward::kHostPlan:
      kernels::embedding_bag_backward<T>(
          ctx_, d_out, width, spec_.dim, offsets_.data<std::int64_t>(), spec_.pooling,
          occurrence_offsets_.data<std::int64_t>(), occurrence_samples_.data<std::int64_t>(),
          capacity, row_gradients);
      return;
  }
}

template <typename T>
void EmbeddingBag<T>::publish_touched_rows() {
  table_->touched_rows_device = touched_rows_device_;
  table_->touched_row_count_device = num_distinct_;
  table_->touched_rows_on_host = spec_.backward == EmbeddingBackward::kHostPlan;
  if (table_->touched_rows_on_host) {
    table_->touched_rows = unique_rows_;
  } else {
    table_->touched_rows.clear();
  }
}

namespace {
// Uploads `values` into *target as a tensor of `shape` on `device`, reusing its buffer when it
// already has that shape there.
template <typename V>
void upload_into(const std::vector<V>& values, const Shape& shape, Device device, Tensor* target) {
  target->ensure(shape, dtype_of<V>(), device);
  if (static_cast<std::int64_t>(values.size()) != target->numel()) {
    throw std::invalid_argument("staging " + std::to_string(values.size()) + " values as " +
                                shape_to_string(shape));
  }
  if (!values.empty()) target->copy_from_host(values.data());
}
}  // namespace

template <typename T>
void EmbeddingBag<T>::forward(const io::SparseColumn& column, std::int64_t batch, Tensor& out,
                              std::int64_t column_offset) {
  stage(column, batch, out.device(), &staged_rows_, &staged_offsets_);
  forward(staged_rows_, staged_offsets_, batch, out, column_offset);
}

template <typename T>
void EmbeddingBag<T>::stage(const io::SparseColumn& column, std::int64_t batch, Device device,
                            Tensor* rows_out, Tensor* offsets_out) {
  std::vector<std::int64_t> rows(column.ids.size());
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t i = column.offsets[b]; i < column.offsets[b + 1]; ++i) {
      const std::int64_t id = column.ids[i];
      if (id >= 0 && id < spec_.vocabulary_size) {
        rows[i] = id;
      } else if (spec_.out_of_range == OutOfRange::kHash) {
        rows[i] = hashed_row(id, spec_.vocabulary_size);
      } else {
        throw SparseIdError("sparse slot '" + spec_.name + "': id " + std::to_string(id) +
                            " of sample " + std::to_string(b) + " is outside the vocabulary [0, " +
                            std::to_string(spec_.vocabulary_size) +
                            "); raise vocabulary_size or set out_of_range = \"hash\" for it");
      }
    }
  }
  upload_into(rows, Shape{static_cast<std::int64_t>(rows.size())}, device, rows_out);
  upload_into(column.offsets, Shape{batch + 1}, device, offsets_out);
  if (spec_.backward == EmbeddingBackward::kHostPlan) {
    build_host_plan(rows, column.offsets, batch, device);
  }
}

template <typename T>
void EmbeddingBag<T>::forward(const Tensor& rows, const Tensor& offsets, std::int64_t batch,
                              Tensor& out, std::int64_t column_offset) {
  const Device device = out.device();
  batch_ = batch;
  num_ids_ = rows.numel();
  rows_ = rows;
  offsets_ = offsets;
  if (spec_.backward != EmbeddingBackward::kHostPlan) build_device_plan(device);
  kernels::embedding_bag_forward<T>(ctx_, table_->value.data<T>(), spec_.dim,
                                    rows_.data<std::int64_t>(), offsets_.data<std::int64_t>(),
                                    batch, spec_.pooling, out.data<T>() + column_offset,
                                    out.dim(1));
}

template <typename T>
void EmbeddingBag<T>::backward(const Tensor& d_out, std::int64_t column_offset) {
  const std::int64_t capacity = prepare_touched_rows();
  Tensor row_gradients = row_gradient_buffer(Shape{capacity, spec_.dim}, d_out.device());
  write_row_gradients(d_out.data<T>() + column_offset, d_out.dim(1), capacity,
                      row_gradients.data<T>());
  table_->gradient = row_gradients;
  publish_touched_rows();
}

template <typename T>
void EmbeddingBag<T>::backward_stacked(const Tensor& d_out_stacked, std::int64_t column_offset) {
  if (d_out_stacked.rank() != 3 || d_out_stacked.dim(1) != batch_ ||
      d_out_stacked.dim(2) < column_offset + spec_.dim) {
    throw std::invalid_argument("embedding slot '" + spec_.name +
                                "': stacked backward expects [tasks, " + std::to_string(batch_) +
                                ", >= " + std::to_string(column_offset + spec_.dim) + "], got " +
                                shape_to_string(d_out_stacked.shape()));
  }
  const std::int64_t tasks = d_out_stacked.dim(0);
  const std::int64_t width = d_out_stacked.dim(2);
  const std::int64_t capacity = prepare_touched_rows();
  Tensor row_gradients =
      row_gradient_buffer(Shape{tasks, capacity, spec_.dim}, d_out_stacked.device());
  for (std::int64_t k = 0; k < tasks; ++k) {
    write_row_gradients(d_out_stacked.data<T>() + k * batch_ * width + column_offset, width,
                        capacity, row_gradients.data<T>() + k * capacity * spec_.dim);
  }
  table_->task_gradients = row_gradients;
  table_->gradient =
      Tensor::zeros(Shape{capacity, spec_.dim}, dtype_of<T>(), d_out_stacked.device());
  publish_touched_rows();
}

template <typename T>
FeatureInput<T>::FeatureInput(LayerBuilder& builder, std::int64_t num_dense,
                              const std::vector<EmbeddingSlotSpec>& slots)
    : ctx_(builder.ctx), num_dense_(num_dense) {
  std::int64_t width = num_dense;
  slots_.reserve(slots.size());
  for (const auto& spec : slots) {
    slots_.emplace_back(builder, spec);
    slot_offsets_.push_back(width);
    width += spec.dim;
  }
  out_features_ = width;
}

template <typename T>
Tensor FeatureInput<T>::forward(const io::Batch& batch) {
  stage(batch, &staged_);
  return forward(staged_);
}

template <typename T>
void FeatureInput<T>::stage(const io::Batch& batch, StagedInput* into) {
  if (batch.sparse.size() != slots_.size()) {
    throw std::invalid_argument("batch has " + std::to_string(batch.sparse.size()) +
                                " sparse slots, the model expects " +
                                std::to_string(slots_.size()));
  }
  const std::int64_t n = batch.size;
  into->batch = n;
  if (num_dense_ > 0) {
    for (std::size_t i = 0; i < batch.dense.size(); ++i) {
      if (!std::isfinite(batch.dense[i])) {
        throw std::invalid_argument(
            "dense feature " + std::to_string(i % num_dense_) + " of sample " +
            std::to_string(i / num_dense_) + " in this batch is " + std::to_string(batch.dense[i]) +
            "; clean or impute the data (the converter can normalise dense columns)");
      }
    }
    upload_into(std::vector<T>(batch.dense.begin(), batch.dense.end()), Shape{n, num_dense_},
                ctx_.device, &into->dense);
  } else {
    into->dense = Tensor();
  }
  into->rows.resize(slots_.size());
  into->offsets.resize(slots_.size());
  for (std::size_t s = 0; s < slots_.size(); ++s) {
    slots_[s].stage(batch.sparse[s], n, ctx_.device, &into->rows[s], &into->offsets[s]);
  }
}

template <typename T>
Tensor FeatureInput<T>::forward(const StagedInput& staged) {
  const std::int64_t n = staged.batch;
  Tensor input(Shape{n, out_features_}, dtype_of<T>(), ctx_.device);
  if (num_dense_ > 0) {
    kernels::copy_rows<T>(ctx_, staged.dense.data<T>(), num_dense_, input.data<T>(), out_features_,
                          n, num_dense_, false);
  }
  for (std::size_t s = 0; s < slots_.size(); ++s) {
    slots_[s].forward(staged.rows[s], staged.offsets[s], n, input, slot_offsets_[s]);
  }
  return input;
}

template <typename T>
std::int64_t FeatureInput<T>::column_of(const std::string& name) const {
  for (std::size_t s = 0; s < slots_.size(); ++s) {
    if (slots_[s].spec().name == name) return slot_offsets_[s];
  }
  throw std::invalid_argument("no sparse slot named '" + name + "'");
}

template <typename T>
void FeatureInput<T>::backward(const Tensor& d_input) {
  for (std::size_t s = 0; s < slots_.size(); ++s) slots_[s].backward(d_input, slot_offsets_[s]);
}

template <typename T>
void FeatureInput<T>::backward_stacked(const Tensor& d_input_stacked) {
  for (std::size_t s = 0; s < slots_.size(); ++s) {
    slots_[s].backward_stacked(d_input_stacked, slot_offsets_[s]);
  }
}

template class EmbeddingBag<float>;
template class EmbeddingBag<double>;
template class FeatureInput<float>;
template class FeatureInput<double>;

}  // namespace drgrad::engine
