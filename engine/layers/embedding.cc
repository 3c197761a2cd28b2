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
std::int64_t EmbeddingBag<T>::resolve_touched_rows() {
  if (!touched_rows_resolved_ && spec_.backward == EmbeddingBackward::kHostPlan) {
    touched_rows_device_ = Tensor::from_vector<std::int64_t>(
                               {static_cast<std::int64_t>(unique_rows_.size())}, unique_rows_)
                               .to(rows_.device());
    touched_rows_resolved_ = true;
  }
  if (!touched_rows_resolved_) {
    // TODO(#5): Parameter keeps a host copy of the touched rows and sizes its gradient by their
    // count, so the device plan's count (8 bytes) and rows (8 bytes each) come back here, one
    // synchronisation per slot and batch. The kernels take the count in device memory
    // (embedding_bag_backward_with_device_count); the engine and the optimizer do not yet.
    const std::int64_t count = num_distinct_.to_vector<std::int64_t>().at(0);
    touched_rows_device_ = distinct_rows_.narrow_first(0, count);
    unique_rows_ = touched_rows_device_.to_vector<std::int64_t>();
    touched_rows_resolved_ = true;
  }
  return static_cast<std::int64_t>(unique_rows_.size());
}

template <typename T>
void EmbeddingBag<T>::write_row_gradients(const T* d_out, std::int64_t width,
                                          std::int64_t num_unique, T* row_gradients) {
  if (spec_.backward == EmbeddingBackward::kFastNondeterministic) {
    kernels::embedding_bag_backward_atomic<T>(
        ctx_, d_out, width, spec_.dim, offsets_.data<std::int64_t>(), batch_, spec_.pooling,
        distinct_index_of_position_.data<std::int64_t>(), num_ids_, num_unique, row_gradients);
    return;
  }
  kernels::embedding_bag_backward<T>(ctx_, d_out, width, spec_.dim, offsets_.data<std::int64_t>(),
                                     spec_.pooling, occurrence_offsets_.data<std::int64_t>(),
                                     occurrence_samples_.data<std::int64_t>(), num_unique,
                                     row_gradients);
}

template <typename T>
void EmbeddingBag<T>::forward(const io::SparseColumn& column, std::int64_t batch, Tensor& out,
                              std::int64_t column_offset) {
  const auto num_ids = static_cast<std::int64_t>(column.ids.size());
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
  const Device device = out.device();
  batch_ = batch;
  num_ids_ = num_ids;
  rows_ = Tensor::from_vector<std::int64_t>({num_ids}, rows).to(device);
  offsets_ = Tensor::from_vector<std::int64_t>({batch + 1}, column.offsets).to(device);
  if (spec_.backward == EmbeddingBackward::kHostPlan) {
    build_host_plan(rows, column.offsets, batch, device);
  } else {
    build_device_plan(device);
  }
  kernels::embedding_bag_forward<T>(ctx_, table_->value.data<T>(), spec_.dim,
                                    rows_.data<std::int64_t>(), offsets_.data<std::int64_t>(),
                                    batch, spec_.pooling, out.data<T>() + column_offset,
                                    out.dim(1));
}

template <typename T>
void EmbeddingBag<T>::backward(const Tensor& d_out, std::int64_t column_offset) {
  const std::int64_t num_unique = resolve_touched_rows();
  Tensor row_gradients(Shape{num_unique, spec_.dim}, dtype_of<T>(), d_out.device());
  write_row_gradients(d_out.data<T>() + column_offset, d_out.dim(1), num_unique,
                      row_gradients.data<T>());
  table_->gradient = row_gradients;
  table_->touched_rows = unique_rows_;
  table_->touched_rows_device = touched_rows_device_;
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
  const std::int64_t num_unique = resolve_touched_rows();
  Tensor row_gradients(Shape{tasks, num_unique, spec_.dim}, dtype_of<T>(), d_out_stacked.device());
  for (std::int64_t k = 0; k < tasks; ++k) {
    write_row_gradients(d_out_stacked.data<T>() + k * batch_ * width + column_offset, width,
                        num_unique, row_gradients.data<T>() + k * num_unique * spec_.dim);
  }
  table_->task_gradients = row_gradients;
  table_->gradient =
      Tensor::zeros(Shape{num_unique, spec_.dim}, dtype_of<T>(), d_out_stacked.device());
  table_->touched_rows = unique_rows_;
  table_->touched_rows_device = touched_rows_device_;
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
  if (batch.sparse.size() != slots_.size()) {
    throw std::invalid_argument("batch has " + std::to_string(batch.sparse.size()) +
                                " sparse slots, the model expects " +
                                std::to_string(slots_.size()));
  }
  const std::int64_t n = batch.size;
  Tensor input(Shape{n, out_features_}, dtype_of<T>(), ctx_.device);
  if (num_dense_ > 0) {
    for (std::size_t i = 0; i < batch.dense.size(); ++i) {
      if (!std::isfinite(batch.dense[i])) {
        throw std::invalid_argument(
            "dense feature " + std::to_string(i % num_dense_) + " of sample " +
            std::to_string(i / num_dense_) + " in this batch is " + std::to_string(batch.dense[i]) +
            "; clean or impute the data (the converter can normalise dense columns)");
      }
    }
    std::vector<T> dense(batch.dense.begin(), batch.dense.end());
    const Tensor dense_block = Tensor::from_vector<T>({n, num_dense_}, dense).to(ctx_.device);
    kernels::copy_rows<T>(ctx_, dense_block.data<T>(), num_dense_, input.data<T>(), out_features_,
                          n, num_dense_, false);
  }
  for (std::size_t s = 0; s < slots_.size(); ++s) {
    slots_[s].forward(batch.sparse[s], n, input, slot_offsets_[s]);
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
