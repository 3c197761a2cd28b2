// CRC32C (Castagnoli), the checksum of TFRecord framing and drgrad shards. Uses the SSE4.2 crc32
// instruction when the CPU has it (checked once at run time), a slicing-by-8 table otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace drgrad::io {

// CRC32C of `data`, continuing from `crc` (the value a previous call returned; 0 to start).
std::uint32_t crc32c_extend(std::uint32_t crc, const void* data, std::size_t size);
inline std::uint32_t crc32c(const void* data, std::size_t size) {
  return crc32c_extend(0, data, size);
}
inline std::uint32_t crc32c(std::span<const std::byte> data) {
  return crc32c_extend(0, data.data(), data.size());
}

// The portable table implementation, exposed so tests can compare it with the hardware path.
std::uint32_t crc32c_extend_portable(std::uint32_t crc, const void* data, std::size_t size);
// True when crc32c_extend uses the SSE4.2 instruction on this machine.
bool crc32c_uses_hardware();

// TFRecord stores checksums "masked" (rotated and offset) so that a CRC computed over data that
// itself contains CRCs does not degenerate. These are TensorFlow's mask and its inverse.
constexpr std::uint32_t kCrc32cMaskDelta = 0xa282ead8u;
constexpr std::uint32_t mask_crc32c(std::uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + kCrc32cMaskDelta;
}
constexpr std::uint32_t unmask_crc32c(std::uint32_t masked) {
  const std::uint32_t rotated = masked - kCrc32cMaskDelta;
  return (rotated >> 17) | (rotated << 15);
}

}  // namespace drgrad::io
