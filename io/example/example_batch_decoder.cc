// ExampleBatchDecoder: one pass over the Example's features, each looked up once by name and
// written straight into the batch's columns.
#include "io/example/example_batch_decoder.h"

#include <cmath>

#include "io/example/example.h"

namespace drgrad::io {

std::int64_t hash_feature_bytes(std::string_view bytes) {
  // FNV-1a followed by a murmur-style finaliser to spread short strings over all bits.
  std::uint64_t state = 0xcbf29ce484222325ULL;
  for (const char c : bytes) {
    state ^= static_cast<unsigned char>(c);
    state *= 0x100000001b3ULL;
  }
  state ^= state >> 33;
  state *= 0xff51afd7ed558ccdULL;
  state ^= state >> 33;
  state *= 0xc4ceb9fe1a85ec53ULL;
  state ^= state >> 33;
  return static_cast<std::int64_t>(state & 0x7fffffffffffffffULL);
}

ExampleBatchDecoder::ExampleBatchDecoder(ExampleMapping mapping) : mapping_(std::move(mapping)) {
  const Schema& schema = mapping_.schema;
  if (mapping_.sparse_encodings.empty()) {
    mapping_.sparse_encodings.assign(schema.num_sparse(), SparseIdEncoding::automatic);
  }
  if (mapping_.sparse_encodings.size() != schema.num_sparse()) {
    throw std::invalid_argument("ExampleMapping has " +
                                std::to_string(mapping_.sparse_encodings.size()) +
                                " sparse encodings for " + std::to_string(schema.num_sparse()) +
                                " sparse slots; give one per slot or none");
  }
  auto add = [&](const std::string& name, Role role, std::size_t index) {
    if (!targets_.emplace(name, Target{role, index}).second) {
      throw std::invalid_argument("ExampleMapping uses feature '" + name +
                                  "' twice; each Example feature can fill one slot");
    }
  };
  for (std::size_t i = 0; i < schema.num_dense(); ++i)
    add(schema.dense_features[i], Role::dense, i);
  for (std::size_t i = 0; i < schema.num_sparse(); ++i) {
    add(schema.sparse_slots[i].name, Role::sparse, i);
  }
  for (std::size_t i = 0; i < schema.num_labels(); ++i) add(schema.labels[i], Role::label, i);
}

void ExampleBatchDecoder::append(std::span<const std::byte> record, Batch& batch) {
  const std::size_t dense_size = batch.dense.size();
  const std::size_t label_size = batch.labels.size();
  try {
    append_unchecked(record, batch);
  } catch (...) {
    batch.dense.resize(dense_size);
    batch.labels.resize(label_size);
    for (auto& column : batch.sparse) {
      column.offsets.resize(static_cast<std::size_t>(batch.size) + 1);
      column.ids.resize(static_cast<std::size_t>(column.offsets.back()));
    }
    throw;
  }
}

void ExampleBatchDecoder::append_unchecked(std::span<const std::byte> record, Batch& batch) {
  const Schema& schema = mapping_.schema;
  if (batch.sparse.size() != schema.num_sparse()) {
    throw std::invalid_argument("ExampleBatchDecoder::append: the batch has " +
                                std::to_string(batch.sparse.size()) + " sparse columns, the " +
                                "schema " + std::to_string(schema.num_sparse()));
  }
  const std::size_t dense_base = batch.dense.size();
  const std::size_t label_base = batch.labels.size();
  batch.dense.resize(dense_base + schema.num_dense(), mapping_.missing_dense_value);
  batch.labels.resize(label_base + schema.num_labels(), mapping_.missing_label_value);
  seen_.assign(schema.num_dense() + schema.num_sparse() + schema.num_labels(), 0);
  const std::size_t sparse_seen_base = schema.num_dense();
  const std::size_t label_seen_base = schema.num_dense() + schema.num_sparse();

  auto single_value = [&](const FeatureView& view, const char* role) -> float {
    float_scratch_.clear();
    int64_scratch_.clear();
    std::size_t count = 0;
    float value = 0.0f;
    if (view.kind == FeatureKind::float_list) {
      append_float_values(view.list, float_scratch_);
      count = float_scratch_.size();
      if (count == 1) value = float_scratch_[0];
    } else if (view.kind == FeatureKind::int64_list) {
      append_int64_values(view.list, int64_scratch_);
      count = int64_scratch_.size();
      if (count == 1) value = static_cast<float>(int64_scratch_[0]);
    } else {
      throw ExampleMappingError(std::string(role) + " feature '" + std::string(view.name) +
                                "' is a " + to_string(view.kind) +
                                "; it must be a float_list or int64_list with one value");
    }
    if (count != 1) {
      throw ExampleMappingError(std::string(role) + " feature '" + std::string(view.name) +
                                "' has " + std::to_string(count) +
                                " values; it must have exactly one (map multi-valued features "
                                "to a sparse slot instead)");
    }
    return value;
  };

  std::size_t feature_index = 0;
  for_each_feature(record, [&](const FeatureView& view) {
    // Writers emit features in the same order record after record: guess the target from the
    // previous record's order and fall back to the hash lookup when the guess is wrong.
    const std::size_t index = feature_index++;
    if (index >= predicted_.size()) predicted_.resize(index + 1);
    Prediction& prediction = predicted_[index];
    if (!prediction.valid || prediction.name != view.name) {
      const auto entry = targets_.find(view.name);
      prediction.valid = true;
      prediction.name.assign(view.name);
      prediction.mapped = entry != targets_.end();
      if (prediction.mapped) prediction.target = entry->second;
    }
    if (!prediction.mapped) return;  // features the mapping does not use are ignored
    const Target target = prediction.target;
    switch (target.role) {
      case Role::dense:
        batch.dense[dense_base + target.index] = single_value(view, "dense");
        seen_[target.index] = 1;
        break;
      case Role::label:
        batch.labels[label_base + target.index] = single_value(view, "label");
        seen_[label_seen_base + target.index] = 1;
        break;
      case Role::sparse: {
        SparseColumn& column = batch.sparse[target.index];
        // A repeated feature name: the last occurrence wins, as in protobuf maps.
        column.ids.resize(static_cast<std::size_t>(column.offsets.back()));
        const SparseIdEncoding encoding = mapping_.sparse_encodings[target.index];
        const std::int64_t vocabulary = schema.sparse_slots[target.index].vocabulary_size;
        const std::size_t first = column.ids.size();
        if (view.kind == FeatureKind::int64_list && encoding != SparseIdEncoding::hashed_bytes) {
          append_int64_values(view.list, column.ids);
        } else if (view.kind == FeatureKind::bytes_list &&
                   encoding != SparseIdEncoding::int64_ids) {
          bytes_scratch_.clear();
          append_bytes_values(view.list, bytes_scratch_);
          for (const auto value : bytes_scratch_) column.ids.push_back(hash_feature_bytes(value));
        } else if (view.kind != FeatureKind::none) {
          throw ExampleMappingError("sparse feature '" + std::string(view.name) + "' is a " +
                                    to_string(view.kind) + "; the mapping expects " +
                                    (encoding == SparseIdEncoding::int64_ids ? "an int64_list"
                                     : encoding == SparseIdEncoding::hashed_bytes
                                         ? "a bytes_list"
                                         : "an int64_list or bytes_list"));
        }
        for (std::size_t i = first; i < column.ids.size(); ++i) {
          std::int64_t& id = column.ids[i];
          if (vocabulary > 0) {
            id %= vocabulary;
            if (id < 0) id += vocabulary;
          } else if (id < 0) {
            throw ExampleMappingError("sparse feature '" + std::string(view.name) +
                                      "' holds the negative id " + std::to_string(id) +
                                      "; give the slot a vocabulary_size to fold ids into range");
          }
        }
        seen_[sparse_seen_base + target.index] = 1;
        break;
      }
    }
  });

  if (!mapping_.allow_missing_labels) {
    for (std::size_t i = 0; i < schema.num_labels(); ++i) {
      if (!seen_[label_seen_base + i]) {
        throw ExampleMappingError("the Example has no label feature '" + schema.labels[i] +
                                  "'; check the mapping or set allow_missing_labels");
      }
    }
  }
  for (auto& column : batch.sparse) {
    column.offsets.push_back(static_cast<std::int64_t>(column.ids.size()));
  }
  ++batch.size;
}

}  // namespace drgrad::io
