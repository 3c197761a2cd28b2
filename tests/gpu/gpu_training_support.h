// Shared pieces of the GPU tests that train whole models: consecutive batches cut from generated
// data, and a model spec's inputs and tasks read off the data's schema.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/models/model_spec.h"
#include "io/data/batch.h"

namespace drgrad::gpu_test {

// `count` batches of `batch` consecutive samples of `all`, the first one starting at sample
// `first`.
inline std::vector<io::Batch> consecutive_batches(const io::Batch& all, std::int64_t batch,
                                                  std::int64_t count, std::int64_t first = 0) {
  std::vector<io::Batch> batches;
  std::vector<std::int64_t> rows(static_cast<std::size_t>(batch));
  for (std::int64_t b = 0; b < count; ++b) {
    for (std::int64_t i = 0; i < batch; ++i) rows[i] = first + b * batch + i;
    batches.push_back(io::gather_rows(all, rows));
  }
  return batches;
}

// A spec with the schema's dense inputs, one embedding slot of `dim` per sparse slot (with the
// given backward and pooling) and one binary task per label; the caller sets the rest.
inline engine::ModelSpec spec_for_schema(
    const io::Schema& schema, std::int64_t dim,
    engine::EmbeddingBackward backward = engine::EmbeddingBackward::kHostPlan,
    kernels::Pooling pooling = kernels::Pooling::kSum) {
  engine::ModelSpec spec;
  spec.num_dense = static_cast<std::int64_t>(schema.num_dense());
  for (const auto& slot_schema : schema.sparse_slots) {
    engine::EmbeddingSlotSpec slot;
    slot.name = slot_schema.name;
    slot.vocabulary_size = slot_schema.vocabulary_size;
    slot.dim = dim;
    slot.pooling = pooling;
    slot.backward = backward;
    spec.slots.push_back(slot);
  }
  for (std::size_t t = 0; t < schema.labels.size(); ++t) {
    spec.tasks.push_back({schema.labels[t], static_cast<int>(t)});
  }
  return spec;
}

}  // namespace drgrad::gpu_test
