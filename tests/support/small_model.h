// A small model and batch for whole-model tests in double precision: two embedding slots (sum
// and mean pooling, error and hash for out-of-range ids), three dense inputs, binary tasks, Mish
// everywhere (smooth, so finite differences never straddle a kink) and empty bags.
#pragma once

#include <cstdint>
#include <string>

#include "engine/core/random.h"
#include "engine/models/model_spec.h"
#include "io/data/batch.h"

namespace drgrad::testing {

inline engine::ModelSpec small_spec(engine::BackboneKind backbone, int num_tasks) {
  engine::ModelSpec spec;
  spec.num_dense = 3;
  spec.slots = {{"a", 6, 2, kernels::Pooling::kSum, engine::OutOfRange::kError},
                {"b", 5, 3, kernels::Pooling::kMean, engine::OutOfRange::kHash}};
  for (int k = 0; k < num_tasks; ++k) {
    spec.tasks.push_back({"task" + std::to_string(k), k, engine::TaskType::kBinary, 1.0, 1.0});
  }
  spec.backbone = backbone;
  spec.activation = kernels::Activation::kMish;
  spec.bottom_units = {5, 4};
  spec.num_experts = 3;
  spec.expert_units = {4, 3};
  spec.ple_levels = 2;
  spec.task_experts = 1;
  spec.shared_experts = 2;
  spec.tower_units = {3};
  return spec;
}

// `size` samples for small_spec's inputs and `num_tasks` label columns.
inline io::Batch small_batch(engine::Random& random, std::int64_t size, int num_tasks) {
  io::Batch batch;
  batch.size = size;
  for (std::int64_t i = 0; i < size * 3; ++i) batch.dense.push_back(random.uniform(-1, 1));
  for (std::int64_t i = 0; i < size * num_tasks; ++i) batch.labels.push_back(random.below(2));
  batch.sparse.resize(2);
  for (std::int64_t b = 0; b < size; ++b) {
    for (int s = 0; s < 2; ++s) {
      const auto count = random.below(3);  // empty bags included
      for (std::uint64_t i = 0; i < count; ++i) {
        batch.sparse[s].ids.push_back(static_cast<std::int64_t>(random.below(s == 0 ? 6 : 9)));
      }
      batch.sparse[s].offsets.push_back(static_cast<std::int64_t>(batch.sparse[s].ids.size()));
    }
  }
  return batch;
}

}  // namespace drgrad::testing
