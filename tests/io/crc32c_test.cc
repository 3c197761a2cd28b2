// CRC32C: published check values, hardware path against the table path, masking.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "io/util/crc32c.h"

using namespace drgrad::io;

TEST_CASE("crc32c matches published check values", "[crc32c]") {
  const std::string digits = "123456789";
  CHECK(crc32c(digits.data(), digits.size()) == 0xe3069283u);
  // RFC 3720 (iSCSI) appendix B.4 vectors.
  std::vector<unsigned char> zeros(32, 0x00), ones(32, 0xff), ascending(32), descending(32);
  for (int i = 0; i < 32; ++i) {
    ascending[i] = static_cast<unsigned char>(i);
    descending[i] = static_cast<unsigned char>(31 - i);
  }
  CHECK(crc32c(zeros.data(), zeros.size()) == 0x8a9136aau);
  CHECK(crc32c(ones.data(), ones.size()) == 0x62a8ab43u);
  CHECK(crc32c(ascending.data(), ascending.size()) == 0x46dd794eu);
  CHECK(crc32c(descending.data(), descending.size()) == 0x113fdb5cu);
  CHECK(crc32c(nullptr, 0) == 0u);
}

TEST_CASE("crc32c hardware and table paths agree on random data", "[crc32c]") {
  std::mt19937 generator(7);
  std::vector<unsigned char> data(4096 + 13);
  for (auto& byte : data) byte = static_cast<unsigned char>(generator());
  for (std::size_t start : {0u, 1u, 3u, 7u}) {
    for (std::size_t size : {0u, 1u, 7u, 8u, 9u, 63u, 1000u, 4096u}) {
      CHECK(crc32c_extend(0, data.data() + start, size) ==
            crc32c_extend_portable(0, data.data() + start, size));
    }
  }
  INFO("hardware path in use: " << crc32c_uses_hardware());
  CHECK(crc32c_extend_portable(0, "123456789", 9) == 0xe3069283u);
}

TEST_CASE("crc32c extends across split buffers", "[crc32c]") {
  const std::string text = "The quick brown fox jumps over the lazy dog, twice over.";
  const std::uint32_t whole = crc32c(text.data(), text.size());
  for (std::size_t cut = 0; cut <= text.size(); ++cut) {
    const std::uint32_t first = crc32c(text.data(), cut);
    CHECK(crc32c_extend(first, text.data() + cut, text.size() - cut) == whole);
    CHECK(crc32c_extend_portable(first, text.data() + cut, text.size() - cut) == whole);
  }
}

TEST_CASE("masked crc32c round-trips and differs from the raw value", "[crc32c]") {
  std::mt19937 generator(11);
  for (int i = 0; i < 1000; ++i) {
    const std::uint32_t value = generator();
    CHECK(unmask_crc32c(mask_crc32c(value)) == value);
  }
  // TensorFlow's mask of 0: rotate right by 15 is 0, plus the delta.
  CHECK(mask_crc32c(0) == kCrc32cMaskDelta);
}
