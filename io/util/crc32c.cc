// CRC32C: a slicing-by-8 table implementation and an SSE4.2 one compiled with a target attribute,
// chosen once at run time, so the binary runs on CPUs without SSE4.2 too.
#include "io/util/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <nmmintrin.h>
#define DRGRAD_CRC32C_HAS_SSE42_PATH 1
#else
#define DRGRAD_CRC32C_HAS_SSE42_PATH 0
#endif

namespace drgrad::io {
namespace {

constexpr std::uint32_t kReversedPolynomial = 0x82f63b78u;

// tables[k][b]: the CRC contribution of byte b followed by k zero bytes.
using SlicingTables = std::array<std::array<std::uint32_t, 256>, 8>;

constexpr SlicingTables make_tables() {
  SlicingTables tables{};
  for (std::uint32_t byte = 0; byte < 256; ++byte) {
    std::uint32_t crc = byte;
    for (int bit = 0; bit < 8; ++bit) crc = (crc >> 1) ^ ((crc & 1u) ? kReversedPolynomial : 0u);
    tables[0][byte] = crc;
  }
  for (std::size_t k = 1; k < 8; ++k) {
    for (std::size_t byte = 0; byte < 256; ++byte) {
      const std::uint32_t previous = tables[k - 1][byte];
      tables[k][byte] = (previous >> 8) ^ tables[0][previous & 0xffu];
    }
  }
  return tables;
}

constexpr SlicingTables kTables = make_tables();

std::uint32_t load_u32_le(const unsigned char* p) {
  return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
         (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}

#if DRGRAD_CRC32C_HAS_SSE42_PATH
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(std::uint32_t crc,
                                                             const unsigned char* p,
                                                             std::size_t size) {
  std::uint64_t state = ~crc;
  while (size >= 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    state = _mm_crc32_u64(state, word);
    p += 8;
    size -= 8;
  }
  auto state32 = static_cast<std::uint32_t>(state);
  while (size > 0) {
    state32 = _mm_crc32_u8(state32, *p++);
    --size;
  }
  return ~state32;
}

bool detect_sse42() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}
#endif

}  // namespace

std::uint32_t crc32c_extend_portable(std::uint32_t crc, const void* data, std::size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint32_t state = ~crc;
  while (size >= 8) {
    const std::uint32_t low = load_u32_le(p) ^ state;
    const std::uint32_t high = load_u32_le(p + 4);
    state = kTables[7][low & 0xffu] ^ kTables[6][(low >> 8) & 0xffu] ^
            kTables[5][(low >> 16) & 0xffu] ^ kTables[4][low >> 24] ^ kTables[3][high & 0xffu] ^
            kTables[2][(high >> 8) & 0xffu] ^ kTables[1][(high >> 16) & 0xffu] ^
            kTables[0][high >> 24];
    p += 8;
    size -= 8;
  }
  while (size > 0) {
    state = (state >> 8) ^ kTables[0][(state ^ *p++) & 0xffu];
    --size;
  }
  return ~state;
}

bool crc32c_uses_hardware() {
#if DRGRAD_CRC32C_HAS_SSE42_PATH
  static const bool has_sse42 = detect_sse42();
  return has_sse42;
#else
  return false;
#endif
}

std::uint32_t crc32c_extend(std::uint32_t crc, const void* data, std::size_t size) {
#if DRGRAD_CRC32C_HAS_SSE42_PATH
  if (crc32c_uses_hardware()) {
    return crc32c_sse42(crc, static_cast<const unsigned char*>(data), size);
  }
#endif
  return crc32c_extend_portable(crc, data, size);
}

}  // namespace drgrad::io
