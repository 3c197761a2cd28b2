// File, memory and zlib/gzip byte sources, and compression detection by magic bytes.
#include "io/util/byte_source.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "io/util/crc32c.h"
#include "io/util/errors.h"
#include "io/util/little_endian.h"

namespace drgrad::io {

std::string to_string(Compression compression) {
  switch (compression) {
    case Compression::none:
      return "none";
    case Compression::gzip:
      return "gzip";
    case Compression::zlib:
      return "zlib";
    case Compression::detect:
      return "detect";
  }
  return "unknown";
}

Compression parse_compression(const std::string& text) {
  if (text.empty() || text == "none" || text == "NONE") return Compression::none;
  if (text == "gzip" || text == "GZIP") return Compression::gzip;
  if (text == "zlib" || text == "ZLIB") return Compression::zlib;
  if (text == "detect" || text == "auto") return Compression::detect;
  throw std::invalid_argument("unknown compression '" + text +
                              "'; use one of none, gzip, zlib, detect");
}

// ---- FileSource ----

FileSource::FileSource(const std::string& path) : path_(path) {
  descriptor_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (descriptor_ < 0) {
    throw std::runtime_error("cannot open '" + path + "' for reading: " + std::strerror(errno) +
                             "; check the path and its permissions");
  }
}

FileSource::~FileSource() {
  if (descriptor_ >= 0) ::close(descriptor_);
}

std::size_t FileSource::read(std::byte* out, std::size_t size) {
  std::size_t total = 0;
  while (total < size) {
    const ssize_t got = ::read(descriptor_, out + total, size - total);
    if (got < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("cannot read '" + path_ + "': " + std::strerror(errno));
    }
    if (got == 0) break;
    total += static_cast<std::size_t>(got);
  }
  return total;
}

bool FileSource::seek(std::uint64_t offset) {
  return ::lseek(descriptor_, static_cast<off_t>(offset), SEEK_SET) >= 0;
}

// ---- MemorySource ----

std::size_t MemorySource::read(std::byte* out, std::size_t size) {
  const std::size_t count = std::min(size, bytes_.size() - position_);
  if (count > 0) std::memcpy(out, bytes_.data() + position_, count);
  position_ += count;
  return count;
}

bool MemorySource::seek(std::uint64_t offset) {
  if (offset > bytes_.size()) return false;
  position_ = static_cast<std::size_t>(offset);
  return true;
}

// ---- InflateSource ----

struct InflateSource::State {
  z_stream stream{};
};

namespace {
constexpr std::size_t kInflateInputBytes = 256 * 1024;
int window_bits_for(Compression format) {
  // 15 = the largest window; +16 selects the gzip wrapper, plain 15 the zlib wrapper.
  return format == Compression::gzip ? 15 + 16 : 15;
}
}  // namespace

InflateSource::InflateSource(std::unique_ptr<ByteSource> compressed, Compression format,
                             std::string file)
    : compressed_(std::move(compressed)),
      state_(std::make_unique<State>()),
      file_(std::move(file)) {
  if (format != Compression::gzip && format != Compression::zlib) {
    throw std::invalid_argument("InflateSource needs gzip or zlib, got " + to_string(format));
  }
  if (inflateInit2(&state_->stream, window_bits_for(format)) != Z_OK) {
    throw std::runtime_error("zlib inflateInit2 failed for '" + file_ + "'");
  }
  input_.resize(kInflateInputBytes);
}

InflateSource::~InflateSource() {
  inflateEnd(&state_->stream);
}

std::size_t InflateSource::read(std::byte* out, std::size_t size) {
  if (pending_error_) std::rethrow_exception(pending_error_);
  std::size_t total = 0;
  try {
    inflate_into(out, size, total);
  } catch (const CorruptRecordError&) {
    if (total == 0) throw;
    pending_error_ = std::current_exception();
  }
  produced_ += total;
  return total;
}

void InflateSource::inflate_into(std::byte* out, std::size_t size, std::size_t& total) {
  z_stream& stream = state_->stream;
  while (total < size) {
    if (stream.avail_in == 0 && !input_exhausted_) {
      const std::size_t got = compressed_->read(input_.data(), input_.size());
      if (got == 0) {
        input_exhausted_ = true;
      } else {
        stream.next_in = reinterpret_cast<Bytef*>(input_.data());
        stream.avail_in = static_cast<uInt>(got);
      }
    }
    if (stream_ended_) {
      // A finished member followed by more input is the next gzip member (concatenation).
      if (stream.avail_in == 0) break;
      inflateReset(&stream);
      stream_ended_ = false;
    }
    if (stream.avail_in == 0 && input_exhausted_) {
      RecordLocation where{file_, -1, static_cast<std::int64_t>(produced_ + total), true};
      throw CorruptRecordError(where, "the compressed stream ends before its end marker",
                               kAdviceTruncated, /*truncated=*/true);
    }
    stream.next_out = reinterpret_cast<Bytef*>(out + total);
    stream.avail_out = static_cast<uInt>(std::min<std::size_t>(size - total, 1u << 30));
    const uInt before = stream.avail_out;
    const int status = inflate(&stream, Z_NO_FLUSH);
    total += before - stream.avail_out;
    if (status == Z_STREAM_END) {
      stream_ended_ = true;
      continue;
    }
    if (status != Z_OK && status != Z_BUF_ERROR) {
      RecordLocation where{file_, -1, static_cast<std::int64_t>(produced_ + total), true};
      throw CorruptRecordError(where,
                               std::string("the compressed stream is damaged (zlib: ") +
                                   (stream.msg ? stream.msg : "error " + std::to_string(status)) +
                                   ")",
                               kAdviceCorrupt);
    }
  }
}

// ---- detection and opening ----

Compression detect_compression(std::span<const std::byte> first_bytes) {
  const auto* b = reinterpret_cast<const unsigned char*>(first_bytes.data());
  if (first_bytes.size() >= 12) {
    const std::uint32_t stored = load_le<std::uint32_t>(b + 8);
    if (stored == mask_crc32c(crc32c(b, 8))) return Compression::none;
  }
  if (first_bytes.size() >= 2 && b[0] == 0x1f && b[1] == 0x8b) return Compression::gzip;
  if (first_bytes.size() >= 2 && (b[0] & 0x0f) == 8 && (b[0] >> 4) <= 7 &&
      ((b[0] << 8) | b[1]) % 31 == 0) {
    return Compression::zlib;
  }
  return Compression::none;
}

namespace {
std::unique_ptr<ByteSource> wrap(std::unique_ptr<ByteSource> raw, Compression compression,
                                 std::span<const std::byte> prefix, const std::string& name,
                                 Compression* detected) {
  if (compression == Compression::detect) compression = detect_compression(prefix);
  if (detected) *detected = compression;
  if (compression == Compression::none) return raw;
  return std::make_unique<InflateSource>(std::move(raw), compression, name);
}
}  // namespace

std::unique_ptr<ByteSource> open_file_source(const std::string& path, Compression compression,
                                             Compression* detected) {
  auto raw = std::make_unique<FileSource>(path);
  std::byte prefix[12];
  std::size_t prefix_size = 0;
  if (compression == Compression::detect) {
    prefix_size = raw->read(prefix, sizeof(prefix));
    raw->seek(0);
  }
  return wrap(std::move(raw), compression, std::span<const std::byte>(prefix, prefix_size), path,
              detected);
}

std::unique_ptr<ByteSource> open_memory_source(std::span<const std::byte> bytes,
                                               Compression compression, const std::string& name,
                                               Compression* detected) {
  return wrap(std::make_unique<MemorySource>(bytes), compression,
              bytes.subspan(0, std::min<std::size_t>(bytes.size(), 12)), name, detected);
}

}  // namespace drgrad::io
