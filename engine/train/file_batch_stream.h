// A BatchStream over files on disk (drgrad shards, TFRecord/Example files) through the io
// layer's streaming DatasetReader: one reader per epoch, reshuffled from (seed, epoch), with the
// reader's exact position saved in checkpoints.
#pragma once

#include <memory>

#include "engine/train/batch_stream.h"
#include "io/reader/dataset_reader.h"

namespace drgrad::engine {

class FileBatchStream final : public BatchStream {
 public:
  // options.num_epochs and options.seed are managed here (one epoch per reader, the seed mixed
  // with the epoch number).
  explicit FileBatchStream(io::DatasetReaderOptions options);

  const io::Schema& schema() const override { return schema_; }
  void start_epoch(std::int64_t epoch) override;
  std::optional<io::Batch> next() override;
  std::int64_t samples_per_epoch() const override { return samples_per_epoch_; }
  std::string save_position() const override;
  void restore_position(const std::string& position) override;
  // Damaged records skipped so far in this epoch (with skip_corrupt).
  std::int64_t corrupt_records_skipped() const;

 private:
  io::DatasetReaderOptions options_;
  std::uint64_t base_seed_;
  std::int64_t epoch_ = 0;
  std::unique_ptr<io::DatasetReader> reader_;
  io::Schema schema_;
  std::int64_t samples_per_epoch_ = 0;
};

}  // namespace drgrad::engine
