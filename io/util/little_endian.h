// Little-endian loads and stores for the on-disk formats (TFRecord framing, drgrad shards).
// memcpy-based, so unaligned addresses are fine; the compiler turns them into single moves.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>

namespace drgrad::io {

static_assert(std::endian::native == std::endian::little,
              "drgrad's file formats are little-endian; big-endian hosts are not supported");

template <typename T>
T load_le(const void* source) {
  T value;
  std::memcpy(&value, source, sizeof(T));
  return value;
}

template <typename T>
void store_le(void* destination, T value) {
  std::memcpy(destination, &value, sizeof(T));
}

template <typename T>
void append_le(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

}  // namespace drgrad::io
