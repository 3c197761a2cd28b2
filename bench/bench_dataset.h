// The generated datasets of the training benchmarks (train_throughput_bench, gpu_train_bench):
// their shapes, the generator, and the file layout the PyTorch peers read.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/core/random.h"
#include "io/data/batch.h"

namespace drgrad::bench {

// Distinct values of the 32 categorical columns of census-income.test (UCI Census-Income KDD)
// once the marital-status label, the income label and the instance weight are removed, in column
// order. The 7 continuous columns become the dense block.
inline constexpr std::int64_t kCensusVocabularies[] = {9, 52, 47, 17, 3,  24, 15, 5,  10, 2,  3,
                                                       6, 8,  6,  6,  51, 37, 8,  10, 9,  10, 3,
                                                       4, 5,  43, 43, 43, 5,  3,  3,  3,  2};

// The input side of a benchmark model: slots and their vocabularies, dense width, tasks, and
// each task's label bias (rarer or more balanced positives).
struct DataShape {
  std::string name;
  std::vector<std::int64_t> vocabularies;
  std::int64_t dense = 0;
  std::vector<std::string> labels;
  std::vector<double> label_biases;
};

inline DataShape census_shape() {
  return {"census",
          std::vector<std::int64_t>(std::begin(kCensusVocabularies), std::end(kCensusVocabularies)),
          7,
          {"income", "never_married"},
          {-2.0, -0.3}};
}

// Criteo-like: 13 dense features and 26 categorical slots, here of equal vocabulary.
inline DataShape industrial_shape(std::int64_t vocabulary) {
  return {"industrial",
          std::vector<std::int64_t>(26, vocabulary),
          13,
          {"task0", "task1", "task2", "task3"},
          {-2.0, -1.0, -0.3, 0.0}};
}

struct Dataset {
  drgrad::io::Schema schema;
  drgrad::io::Batch all;
};

// A dataset whose labels depend on the inputs, so that training has something to learn and the
// loss must fall: dense ~ N(0, 1); one id per slot skewed
// towards small values (floor(V u^2)); label_k ~ Bernoulli(sigmoid(w_k . dense + sum_s
// effect_k[s][id_s] + bias_k)), so that the loss has something to fall to.
inline Dataset make_data(const DataShape& shape, std::int64_t samples, std::uint64_t seed) {
  Dataset data;
  auto& schema = data.schema;
  const std::int64_t num_dense = shape.dense;
  const auto num_slots = static_cast<std::int64_t>(shape.vocabularies.size());
  const auto num_tasks = static_cast<std::int64_t>(shape.labels.size());
  for (std::int64_t j = 0; j < num_dense; ++j) {
    schema.dense_features.push_back("dense" + std::to_string(j));
  }
  for (std::int64_t s = 0; s < num_slots; ++s) {
    schema.sparse_slots.push_back({"slot" + std::to_string(s), shape.vocabularies[s]});
  }
  schema.labels = shape.labels;

  drgrad::engine::Random random(seed);
  std::vector<double> dense_weights(static_cast<std::size_t>(num_tasks * num_dense));
  for (double& w : dense_weights) w = 0.5 * random.normal();
  std::vector<std::vector<double>> effects(static_cast<std::size_t>(num_tasks * num_slots));
  for (std::int64_t t = 0; t < num_tasks; ++t) {
    for (std::int64_t s = 0; s < num_slots; ++s) {
      auto& table = effects[t * num_slots + s];
      table.resize(static_cast<std::size_t>(shape.vocabularies[s]));
      for (double& e : table) e = 0.3 * random.normal();
    }
  }

  auto& batch = data.all;
  batch = drgrad::io::Batch::empty_for(schema);
  batch.size = samples;
  batch.dense.resize(static_cast<std::size_t>(samples * num_dense));
  batch.labels.resize(static_cast<std::size_t>(samples * num_tasks));
  for (auto& column : batch.sparse) {
    column.ids.resize(static_cast<std::size_t>(samples));
    column.offsets.resize(static_cast<std::size_t>(samples + 1));
    for (std::int64_t i = 0; i <= samples; ++i) column.offsets[i] = i;
  }
  std::vector<double> logits(static_cast<std::size_t>(num_tasks));
  for (std::int64_t i = 0; i < samples; ++i) {
    for (std::int64_t t = 0; t < num_tasks; ++t) logits[t] = shape.label_biases[t];
    for (std::int64_t j = 0; j < num_dense; ++j) {
      const double x = random.normal();
      batch.dense[i * num_dense + j] = static_cast<float>(x);
      for (std::int64_t t = 0; t < num_tasks; ++t) {
        logits[t] += dense_weights[t * num_dense + j] * x;
      }
    }
    for (std::int64_t s = 0; s < num_slots; ++s) {
      const double u = random.uniform();
      const std::int64_t vocabulary = shape.vocabularies[s];
      const auto id =
          std::min<std::int64_t>(vocabulary - 1, static_cast<std::int64_t>(vocabulary * u * u));
      batch.sparse[s].ids[i] = id;
      for (std::int64_t t = 0; t < num_tasks; ++t) logits[t] += effects[t * num_slots + s][id];
    }
    for (std::int64_t t = 0; t < num_tasks; ++t) {
      const double p = 1.0 / (1.0 + std::exp(-logits[t]));
      batch.labels[i * num_tasks + t] = random.uniform() < p ? 1.0f : 0.0f;
    }
  }
  batch.validate(schema);
  return data;
}

// The "DRGBENCH1" layout of the benchmarks' --write-data, which the peers (bench/peers/) read:
// "DRGBENCH1\n", little-endian int64 samples, dense, slots, labels, each slot's vocabulary;
// float32 dense [samples, dense]; float32 labels [samples, labels]; int64 ids [slots, samples].
inline void write_dataset(const Dataset& data, const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("cannot open " + path + " for writing (--write-data)");
  const auto& batch = data.all;
  out.write("DRGBENCH1\n", 10);
  const std::int64_t header[] = {batch.size, static_cast<std::int64_t>(data.schema.num_dense()),
                                 static_cast<std::int64_t>(data.schema.num_sparse()),
                                 static_cast<std::int64_t>(data.schema.num_labels())};
  out.write(reinterpret_cast<const char*>(header), sizeof(header));
  for (const auto& slot : data.schema.sparse_slots) {
    out.write(reinterpret_cast<const char*>(&slot.vocabulary_size), sizeof(std::int64_t));
  }
  out.write(reinterpret_cast<const char*>(batch.dense.data()),
            static_cast<std::streamsize>(batch.dense.size() * sizeof(float)));
  out.write(reinterpret_cast<const char*>(batch.labels.data()),
            static_cast<std::streamsize>(batch.labels.size() * sizeof(float)));
  for (const auto& column : batch.sparse) {
    out.write(reinterpret_cast<const char*>(column.ids.data()),
              static_cast<std::streamsize>(column.ids.size() * sizeof(std::int64_t)));
  }
  if (!out) throw std::runtime_error("writing " + path + " failed (disk full?)");
}

}  // namespace drgrad::bench
