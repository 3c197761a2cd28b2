// TFRecord framing, byte for byte as TensorFlow writes it. Each record is
//
//   offset        size  field
//   0             8     length        payload size in bytes, uint64 little-endian
//   8             4     length_crc    masked CRC32C of the 8 length bytes, uint32 little-endian
//   12            n     payload       n = length bytes
//   12 + n        4     payload_crc   masked CRC32C of the payload, uint32 little-endian
//
// Records follow each other with no padding; a file is a sequence of records. GZIP and ZLIB files
// compress the whole sequence as one stream. drgrad shards reuse this framing for every record.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace drgrad::io::tfrecord {

inline constexpr std::size_t kLengthBytes = 8;
inline constexpr std::size_t kLengthCrcBytes = 4;
inline constexpr std::size_t kHeaderBytes = kLengthBytes + kLengthCrcBytes;  // 12
inline constexpr std::size_t kFooterBytes = 4;                               // payload CRC
inline constexpr std::size_t kFramingBytes = kHeaderBytes + kFooterBytes;    // 16 per record

// Readers refuse records longer than this unless told otherwise (protects against a damaged
// length field whose checksum happens to match, and against memory exhaustion).
inline constexpr std::uint64_t kDefaultMaxRecordBytes = std::uint64_t{1} << 30;

// The 12 header bytes for a payload of `length` bytes.
void encode_header(std::uint64_t length, std::byte* header_out);
// The 4 footer bytes (masked CRC32C) for `payload`.
void encode_footer(std::span<const std::byte> payload, std::byte* footer_out);
// Appends one framed record (header, payload, footer) to `out`.
void append_record(std::string& out, std::span<const std::byte> payload);
void append_record(std::string& out, std::string_view payload);

}  // namespace drgrad::io::tfrecord
