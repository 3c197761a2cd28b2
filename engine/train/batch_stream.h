// Where the trainer gets its batches: an epoch-aware stream whose position can be saved in a
// checkpoint and restored so that a resumed run sees exactly the batches an uninterrupted run
// would. InMemoryBatchStream serves a dataset held in memory (generated data), reshuffled each
// epoch from the seed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/data/batch.h"

namespace drgrad::engine {

class BatchStream {
 public:
  virtual ~BatchStream() = default;
  virtual const io::Schema& schema() const = 0;
  // Begins epoch `epoch` (0-based) from its first batch.
  virtual void start_epoch(std::int64_t epoch) = 0;
  // The next batch of the current epoch, or nullopt when the epoch is over.
  virtual std::optional<io::Batch> next() = 0;
  // Samples in one epoch, or -1 when unknown before reading.
  virtual std::int64_t samples_per_epoch() const = 0;
  // Opaque position inside the current epoch, and its restoration (same data and settings).
  virtual std::string save_position() const = 0;
  virtual void restore_position(const std::string& position) = 0;
};

class InMemoryBatchStream final : public BatchStream {
 public:
  // shuffle: a fresh permutation per epoch derived from (seed, epoch); otherwise file order.
  // drop_last: skip a final batch smaller than batch_size (training keeps it by default).
  InMemoryBatchStream(io::Schema schema, io::Batch data, std::int64_t batch_size, bool shuffle,
                      std::uint64_t seed);

  const io::Schema& schema() const override { return schema_; }
  void start_epoch(std::int64_t epoch) override;
  std::optional<io::Batch> next() override;
  std::int64_t samples_per_epoch() const override { return data_.size; }
  std::string save_position() const override;
  void restore_position(const std::string& position) override;

 private:
  io::Schema schema_;
  io::Batch data_;
  std::int64_t batch_size_;
  bool shuffle_;
  std::uint64_t seed_;
  std::int64_t epoch_ = 0;
  std::int64_t cursor_ = 0;
  std::vector<std::int64_t> order_;
};

}  // namespace drgrad::engine
