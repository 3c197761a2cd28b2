// Batch helpers: validation, row gathering, concatenation, schema fingerprints.
#include "io/data/batch.h"

#include <stdexcept>

namespace drgrad::io {

namespace {
// FNV-1a, 64 bit: small, stable across platforms and releases.
void hash_bytes(std::uint64_t& state, const void* data, std::size_t size) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) {
    state ^= bytes[i];
    state *= 0x100000001b3ULL;
  }
}
void hash_string(std::uint64_t& state, const std::string& text) {
  const std::uint64_t length = text.size();
  hash_bytes(state, &length, sizeof(length));
  hash_bytes(state, text.data(), text.size());
}
// At most 8 names, then how many more.
std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < 8; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > 8) out += ", ... (" + std::to_string(names.size() - 8) + " more)";
  return out;
}
}  // namespace

std::uint64_t Schema::fingerprint() const {
  std::uint64_t state = 0xcbf29ce484222325ULL;
  hash_string(state, "dense");
  for (const auto& name : dense_features) hash_string(state, name);
  hash_string(state, "sparse");
  for (const auto& slot : sparse_slots) {
    hash_string(state, slot.name);
    hash_bytes(state, &slot.vocabulary_size, sizeof(slot.vocabulary_size));
  }
  hash_string(state, "labels");
  for (const auto& name : labels) hash_string(state, name);
  return state;
}

std::string Schema::describe() const {
  std::vector<std::string> slot_names;
  for (const auto& slot : sparse_slots) slot_names.push_back(slot.name);
  return std::to_string(num_dense()) + " dense (" + join_names(dense_features) + "), " +
         std::to_string(num_sparse()) + " sparse (" + join_names(slot_names) + "), " +
         std::to_string(num_labels()) + " labels (" + join_names(labels) + ")";
}

Batch Batch::empty_for(const Schema& schema) {
  Batch batch;
  batch.sparse.resize(schema.num_sparse());
  return batch;
}

void Batch::validate(const Schema& schema) const {
  const auto n = static_cast<std::size_t>(size);
  if (dense.size() != n * schema.num_dense()) {
    throw std::invalid_argument("batch dense block has " + std::to_string(dense.size()) +
                                " values, expected " + std::to_string(n) + " x " +
                                std::to_string(schema.num_dense()));
  }
  if (labels.size() != n * schema.num_labels()) {
    throw std::invalid_argument("batch label block has " + std::to_string(labels.size()) +
                                " values, expected " + std::to_string(n) + " x " +
                                std::to_string(schema.num_labels()));
  }
  if (sparse.size() != schema.num_sparse()) {
    throw std::invalid_argument("batch has " + std::to_string(sparse.size()) +
                                " sparse columns, schema has " +
                                std::to_string(schema.num_sparse()));
  }
  for (std::size_t s = 0; s < sparse.size(); ++s) {
    const auto& column = sparse[s];
    const std::string where = "sparse slot '" + schema.sparse_slots[s].name + "'";
    if (column.offsets.size() != n + 1 || column.offsets.front() != 0 ||
        column.offsets.back() != static_cast<std::int64_t>(column.ids.size())) {
      throw std::invalid_argument(where + " has malformed offsets");
    }
    for (std::size_t i = 0; i < n; ++i) {
      if (column.offsets[i + 1] < column.offsets[i]) {
        throw std::invalid_argument(where + " has decreasing offsets at sample " +
                                    std::to_string(i));
      }
    }
  }
}

Batch gather_rows(const Batch& source, std::span<const std::int64_t> rows) {
  Batch out;
  out.size = static_cast<std::int64_t>(rows.size());
  const std::size_t num_dense = source.size ? source.dense.size() / source.size : 0;
  const std::size_t num_labels = source.size ? source.labels.size() / source.size : 0;
  out.dense.reserve(rows.size() * num_dense);
  out.labels.reserve(rows.size() * num_labels);
  for (const std::int64_t row : rows) {
    if (row < 0 || row >= source.size) throw std::out_of_range("gather_rows: row out of range");
    out.dense.insert(out.dense.end(), source.dense.begin() + row * num_dense,
                     source.dense.begin() + (row + 1) * num_dense);
    out.labels.insert(out.labels.end(), source.labels.begin() + row * num_labels,
                      source.labels.begin() + (row + 1) * num_labels);
  }
  out.sparse.resize(source.sparse.size());
  for (std::size_t s = 0; s < source.sparse.size(); ++s) {
    const auto& in = source.sparse[s];
    auto& column = out.sparse[s];
    column.offsets.reserve(rows.size() + 1);
    for (const std::int64_t row : rows) {
      column.ids.insert(column.ids.end(), in.ids.begin() + in.offsets[row],
                        in.ids.begin() + in.offsets[row + 1]);
      column.offsets.push_back(static_cast<std::int64_t>(column.ids.size()));
    }
  }
  return out;
}

void append_batch(Batch& head, const Batch& tail) {
  if (head.size == 0 && head.sparse.empty()) head.sparse.resize(tail.sparse.size());
  if (head.sparse.size() != tail.sparse.size()) {
    throw std::invalid_argument("append_batch: batches have different sparse slot counts");
  }
  head.dense.insert(head.dense.end(), tail.dense.begin(), tail.dense.end());
  head.labels.insert(head.labels.end(), tail.labels.begin(), tail.labels.end());
  for (std::size_t s = 0; s < tail.sparse.size(); ++s) {
    auto& column = head.sparse[s];
    const std::int64_t base = static_cast<std::int64_t>(column.ids.size());
    column.ids.insert(column.ids.end(), tail.sparse[s].ids.begin(), tail.sparse[s].ids.end());
    for (std::size_t i = 1; i < tail.sparse[s].offsets.size(); ++i) {
      column.offsets.push_back(base + tail.sparse[s].offsets[i]);
    }
  }
  head.size += tail.size;
}

}  // namespace drgrad::io
