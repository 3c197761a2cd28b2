// Byte layout of drgrad shards (docs/formats.md has the full specification). A shard is a valid
// TFRecord file (same framing: length, masked CRC32C, payload, masked CRC32C), whose records are
//
//   record 0          header   schema and codec, fixed fields below
//   records 1..B      blocks   one columnar io::Batch each, compressed as the header says
//   record B+1        index    every block's byte offset and sample count
//   record B+2        locator  16-byte payload: the index's offset; always the last 32 file bytes
//
// All integers are little-endian. Offsets are from the start of the file.
#pragma once

#include <cstddef>
#include <cstdint>

namespace drgrad::io::shard {

// ---- header record payload ----
//   0   8  magic "DRGSHARD"
//   8   4  format version (uint32)
//   12  4  block codec (uint32, BlockCodec)
//   16  4  codec level (int32; zstd level, 0 for none)
//   20  4  reserved, 0
//   24  8  schema fingerprint (io::Schema::fingerprint())
//   32  .. schema: uint32 num_dense, uint32 num_sparse, uint32 num_labels, then each dense name,
//          each sparse slot (name, int64 vocabulary_size), each label name; a name is a uint32
//          byte count followed by the UTF-8 bytes.
inline constexpr char kHeaderMagic[8] = {'D', 'R', 'G', 'S', 'H', 'A', 'R', 'D'};
inline constexpr std::uint32_t kFormatVersion = 2;  // 2: narrow ids, optional per-sample counts
inline constexpr std::size_t kHeaderFixedBytes = 32;
inline constexpr std::size_t kHeaderVersionOffset = 8;
inline constexpr std::size_t kHeaderCodecOffset = 12;
inline constexpr std::size_t kHeaderLevelOffset = 16;
inline constexpr std::size_t kHeaderFingerprintOffset = 24;

enum class BlockCodec : std::uint32_t { none = 0, zstd = 1 };

// ---- block record payload ----
//   0   4  codec (uint32, BlockCodec; equals the header's)
//   4   4  reserved, 0
//   8   8  sample count n (uint64)
//   16  8  body size after decompression (uint64)
//   24  .. body, compressed by the codec
// Body (uncompressed):
//   0   4  num_dense d, 4 num_sparse s, 4 num_labels l, 4 reserved (uint32 each; must match the
//          header's schema)
//   16  .. float32 dense[n * d] (row-major), float32 labels[n * l] (row-major), then for each
//          sparse slot:
//            uint64 id count m
//            uint8  id width w: 1, 2, 4 (unsigned ids) or 8 (int64 ids, two's complement)
//            uint8  id layout: kIdsCounted (per-sample counts follow) or kIdsOnePerSample
//                   (every sample has exactly one id, m == n, no counts stored)
//            uint16 reserved, 0
//            uint32 ids_per_sample[n]   only with kIdsCounted
//            ids[m], w bytes each, little-endian
inline constexpr std::size_t kBlockHeaderBytes = 24;
inline constexpr std::size_t kBlockBodyHeaderBytes = 16;
inline constexpr std::uint8_t kIdsCounted = 0;
inline constexpr std::uint8_t kIdsOnePerSample = 1;

// ---- index record payload ----
//   0   8  magic "DRGINDEX"
//   8   8  block count B (uint64)
//   16  8  total sample count (uint64)
//   24  .. B entries of 16 bytes: uint64 byte offset of the block's record, uint64 sample count
inline constexpr char kIndexMagic[8] = {'D', 'R', 'G', 'I', 'N', 'D', 'E', 'X'};
inline constexpr std::size_t kIndexFixedBytes = 24;
inline constexpr std::size_t kIndexEntryBytes = 16;

// ---- locator record payload (the file's last record) ----
//   0   8  byte offset of the index record (uint64)
//   8   8  magic "DRGLOCAT"
inline constexpr char kLocatorMagic[8] = {'D', 'R', 'G', 'L', 'O', 'C', 'A', 'T'};
inline constexpr std::size_t kLocatorPayloadBytes = 16;
inline constexpr std::size_t kLocatorRecordBytes = 16 + kLocatorPayloadBytes;  // with framing

// Limits a reader enforces before allocating (a damaged size field cannot exhaust memory).
inline constexpr std::uint64_t kMaxBlockBodyBytes = std::uint64_t{1} << 32;
inline constexpr std::uint64_t kMaxSchemaEntries = 1 << 20;

}  // namespace drgrad::io::shard
