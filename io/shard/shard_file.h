// Read access to one drgrad shard: checks magic, version and schema on open, loads the block index,
// and decodes any block on demand (thread-safe: each read opens the file and uses positioned reads,
// so no descriptor stays open between calls and thousands of shards can be open at once).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/data/batch.h"
#include "io/shard/shard_block.h"
#include "io/shard/shard_format.h"

namespace drgrad::io {

struct ShardOpenOptions {
  // When set, the shard's schema must have this fingerprint (SchemaMismatchError otherwise).
  std::optional<Schema> expected_schema;
  // A shard without a valid index (the writer crashed before close()) is then opened by scanning
  // its complete blocks instead of failing; corrupt_records_skipped() counts the lost tail as one.
  bool skip_corrupt = false;
};

struct ShardBlockInfo {
  std::uint64_t byte_offset = 0;  // of the block's record
  std::uint64_t samples = 0;
};

class ShardFile {
 public:
  // Opens and validates `path`. Throws std::runtime_error when it cannot be opened,
  // CorruptRecordError for a wrong magic, an unsupported version, damaged header or index, or a
  // truncated file; SchemaMismatchError when expected_schema differs.
  explicit ShardFile(const std::string& path, ShardOpenOptions options = {});

  const std::string& path() const { return path_; }
  const ShardHeader& header() const { return header_; }
  const Schema& schema() const { return header_.schema; }
  const std::vector<ShardBlockInfo>& blocks() const { return blocks_; }
  std::int64_t num_blocks() const { return static_cast<std::int64_t>(blocks_.size()); }
  std::int64_t total_samples() const { return total_samples_; }
  std::uint64_t file_size() const { return file_size_; }
  // True when the index was missing or damaged and the blocks were found by scanning.
  bool recovered_by_scan() const { return recovered_by_scan_; }
  std::int64_t corrupt_records_skipped() const { return skipped_; }

  // Reads and decodes block `block` (0-based) into `out`. `decoder` and `scratch` are the
  // caller's (one per thread). Throws CorruptRecordError naming the block's record and offset.
  void read_block(std::int64_t block, BlockDecoder& decoder, std::vector<std::byte>& scratch,
                  Batch& out) const;

 private:
  // Reads the framed record at `offset` into `scratch`; returns its payload. `record_index` is
  // used in messages.
  std::span<const std::byte> read_record(int descriptor, std::uint64_t offset,
                                         std::int64_t record_index, std::vector<std::byte>& scratch,
                                         const char* what) const;
  void load_index(int descriptor, std::vector<std::byte>& scratch);
  void scan_blocks(int descriptor, std::vector<std::byte>& scratch,
                   std::uint64_t first_block_offset);
  [[noreturn]] void fail(std::int64_t record_index, std::uint64_t offset,
                         const std::string& problem, const char* advice,
                         bool truncated = false) const;

  std::string path_;
  std::uint64_t file_size_ = 0;
  std::uint64_t header_record_bytes_ = 0;
  ShardHeader header_;
  std::vector<ShardBlockInfo> blocks_;
  std::int64_t total_samples_ = 0;
  bool recovered_by_scan_ = false;
  std::int64_t skipped_ = 0;
};

// A human-readable summary for `drgrad inspect`: format version, codec and level, block and sample
// counts, the schema (every name, vocabulary sizes) and its fingerprint. One item per line.
std::string describe_shard(const ShardFile& file);

}  // namespace drgrad::io
