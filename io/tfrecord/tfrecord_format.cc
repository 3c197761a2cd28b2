// Encoding of TFRecord headers and footers (masked CRC32C of length and payload).
#include "io/tfrecord/tfrecord_format.h"

#include "io/util/crc32c.h"
#include "io/util/little_endian.h"

namespace drgrad::io::tfrecord {

void encode_header(std::uint64_t length, std::byte* header_out) {
  store_le<std::uint64_t>(header_out, length);
  store_le<std::uint32_t>(header_out + kLengthBytes, mask_crc32c(crc32c(header_out, kLengthBytes)));
}

void encode_footer(std::span<const std::byte> payload, std::byte* footer_out) {
  store_le<std::uint32_t>(footer_out, mask_crc32c(crc32c(payload)));
}

void append_record(std::string& out, std::span<const std::byte> payload) {
  std::byte header[kHeaderBytes];
  std::byte footer[kFooterBytes];
  encode_header(payload.size(), header);
  encode_footer(payload, footer);
  out.append(reinterpret_cast<const char*>(header), kHeaderBytes);
  out.append(reinterpret_cast<const char*>(payload.data()), payload.size());
  out.append(reinterpret_cast<const char*>(footer), kFooterBytes);
}

void append_record(std::string& out, std::string_view payload) {
  append_record(out, std::span<const std::byte>(reinterpret_cast<const std::byte*>(payload.data()),
                                                payload.size()));
}

}  // namespace drgrad::io::tfrecord
