// Writes drgrad shards: batches in, fixed-size compressed columnar blocks out, then the index
// and locator that let readers split the blocks among threads and ranks without scanning.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "io/data/batch.h"
#include "io/shard/shard_block.h"
#include "io/shard/shard_format.h"

namespace drgrad::io {

class AtomicFileWriter;

struct ShardWriterOptions {
  shard::BlockCodec codec = shard::BlockCodec::zstd;
  int level = 3;  // zstd level (1..19; negative = fast modes); ignored for none
  std::int64_t samples_per_block = 4096;  // the last block of a shard may be smaller
};

class ShardWriter {
 public:
  // Starts writing `path` through a temporary file in the same folder. Throws
  // std::invalid_argument for bad options, std::runtime_error when the folder is unwritable.
  ShardWriter(const std::string& path, Schema schema, ShardWriterOptions options = {});
  // Without close() nothing appears under `path` (the temporary file is removed).
  ~ShardWriter();
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;

  // Appends the samples of `batch` (validated against the schema; std::invalid_argument if not).
  void write(const Batch& batch);
  // Writes the pending samples, the index and the locator, then renames the file into place.
  void close();

  const Schema& schema() const { return schema_; }
  // Samples accepted by write() so far (some may still wait for their block to fill).
  std::int64_t samples_written() const { return samples_written_ + pending_.size; }
  std::int64_t blocks_written() const { return static_cast<std::int64_t>(block_offsets_.size()); }

 private:
  void write_record(const std::string& payload);
  void write_block(const Batch& batch, std::int64_t begin, std::int64_t end);

  Schema schema_;
  ShardWriterOptions options_;
  std::unique_ptr<AtomicFileWriter> file_;
  BlockEncoder encoder_;
  Batch pending_;
  std::string payload_;
  std::vector<std::uint64_t> block_offsets_;
  std::vector<std::uint64_t> block_samples_;
  std::int64_t samples_written_ = 0;
  bool closed_ = false;
};

// Convenience: writes `batch` as one shard file.
void write_shard(const std::string& path, const Schema& schema, const Batch& batch,
                 ShardWriterOptions options = {});

}  // namespace drgrad::io
