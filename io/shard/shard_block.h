// Encoding and decoding of the payloads inside a drgrad shard: the schema in the header record and
// the columnar blocks (one io::Batch each, zstd-compressed or stored). Pure functions on bytes; the
// file-level framing lives in shard_writer.h / shard_file.h.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/data/batch.h"
#include "io/shard/shard_format.h"

namespace drgrad::io {

// A payload does not parse. The message says what is wrong; readers add file, record and offset.
class ShardPayloadError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "none" / "zstd"; parse throws std::invalid_argument for anything else.
std::string to_string(shard::BlockCodec codec);
shard::BlockCodec parse_block_codec(const std::string& text);

// The header record's payload.
struct ShardHeader {
  std::uint32_t version = shard::kFormatVersion;
  shard::BlockCodec codec = shard::BlockCodec::zstd;
  std::int32_t level = 3;
  std::uint64_t fingerprint = 0;  // as stored; decode_shard_header checks it against the schema
  Schema schema;
};
std::string encode_shard_header(const ShardHeader& header);
// Throws ShardPayloadError for a wrong magic, a damaged schema, or a fingerprint that does not
// match the stored schema. The version is returned as stored; the caller decides whether it can
// read it.
ShardHeader decode_shard_header(std::span<const std::byte> payload);

// Serialises samples [begin, end) of a batch into a block payload. Reuses its compression context
// and buffers across calls; one encoder per thread.
class BlockEncoder {
 public:
  BlockEncoder(shard::BlockCodec codec, int level);
  ~BlockEncoder();
  BlockEncoder(const BlockEncoder&) = delete;
  BlockEncoder& operator=(const BlockEncoder&) = delete;
  // Replaces `payload` with the block. The batch must be valid for its own shape.
  void encode(const Batch& batch, std::int64_t begin, std::int64_t end, std::string& payload);

 private:
  shard::BlockCodec codec_;
  int level_;
  void* context_ = nullptr;  // ZSTD_CCtx
  std::string body_;
};

// Parses block payloads back into batches; one decoder per thread.
class BlockDecoder {
 public:
  BlockDecoder();
  ~BlockDecoder();
  BlockDecoder(const BlockDecoder&) = delete;
  BlockDecoder& operator=(const BlockDecoder&) = delete;
  // Replaces `out` with the block's samples. `expected_codec` is the header's codec. Throws
  // ShardPayloadError when the payload is damaged or its shape disagrees with `schema`.
  void decode(std::span<const std::byte> payload, const Schema& schema,
              shard::BlockCodec expected_codec, Batch& out);
  // The sample count a payload's block header claims (throws ShardPayloadError if too short).
  static std::uint64_t sample_count(std::span<const std::byte> payload);
  // Size of the last decoded block body (what decompression produced), for throughput figures.
  std::uint64_t last_body_bytes() const { return last_body_bytes_; }

 private:
  void* context_ = nullptr;  // ZSTD_DCtx
  std::vector<std::byte> body_;
  std::uint64_t last_body_bytes_ = 0;
};

}  // namespace drgrad::io
