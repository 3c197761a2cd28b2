// The in-memory form of training data: a schema naming the features and labels, and a columnar
// batch of samples (dense block, labels, and one CSR list of ids per sparse slot). Every reader
// and generator produces these; the engine consumes them.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace drgrad::io {

struct SparseSlotSchema {
  std::string name;
  // Number of distinct ids the slot can hold (0 when unknown, e.g. before a vocabulary is built).
  std::int64_t vocabulary_size = 0;
};

struct Schema {
  std::vector<std::string> dense_features;
  std::vector<SparseSlotSchema> sparse_slots;
  std::vector<std::string> labels;

  std::size_t num_dense() const { return dense_features.size(); }
  std::size_t num_sparse() const { return sparse_slots.size(); }
  std::size_t num_labels() const { return labels.size(); }
  // A stable 64-bit hash of names, kinds and order (vocabulary sizes included); shards record it
  // so that a reader can tell data written under another schema.
  std::uint64_t fingerprint() const;
  // "3 dense, 2 sparse (a, b), 2 labels (y1, y2)" for messages.
  std::string describe() const;
};

// Ids of one sparse slot for every sample of a batch, in CSR form: the ids of sample i are
// ids[offsets[i] .. offsets[i + 1]). offsets has size + 1 entries and starts at 0. A sample may
// have no id (an empty bag).
struct SparseColumn {
  std::vector<std::int64_t> ids;
  std::vector<std::int64_t> offsets{0};
};

struct Batch {
  std::int64_t size = 0;
  std::vector<float> dense;          // [size, num_dense], row-major
  std::vector<float> labels;         // [size, num_labels], row-major
  std::vector<SparseColumn> sparse;  // one per sparse slot

  // Empty batch shaped for `schema` (offsets initialised, no samples).
  static Batch empty_for(const Schema& schema);
  // Throws std::invalid_argument when the batch's sizes disagree with the schema or offsets are
  // malformed; the message says which column is wrong.
  void validate(const Schema& schema) const;
};

// The samples `rows` of `source`, in that order (rows may repeat).
Batch gather_rows(const Batch& source, std::span<const std::int64_t> rows);
// Appends every sample of `tail` to `head` (same schema).
void append_batch(Batch& head, const Batch& tail);

}  // namespace drgrad::io
