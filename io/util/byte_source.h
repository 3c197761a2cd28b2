// Sequential byte streams the record readers pull from: a file, a memory span, or a zlib/gzip
// decompressor wrapped around either. Readers call read() with large chunks, never per byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace drgrad::io {

// Whole-stream compression of a TFRecord file, as TensorFlow's TFRecordOptions write it.
enum class Compression { none, gzip, zlib, detect };

// "none", "gzip", "zlib", "detect"; parse_compression accepts those and "" (= none), throws
// std::invalid_argument otherwise.
std::string to_string(Compression compression);
Compression parse_compression(const std::string& text);

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads up to `size` bytes; returns how many were read, 0 only at the end of the stream.
  // Throws std::runtime_error on I/O errors and CorruptRecordError on undecodable compressed data.
  virtual std::size_t read(std::byte* out, std::size_t size) = 0;
  // Moves to absolute stream position `offset` when the source supports it (plain files and
  // memory); returns false otherwise (compressed streams), leaving the position unchanged.
  virtual bool seek(std::uint64_t offset) { return false; }
};

// A regular file read with large sequential reads. Throws std::runtime_error naming the path
// when it cannot be opened.
class FileSource final : public ByteSource {
 public:
  explicit FileSource(const std::string& path);
  ~FileSource() override;
  FileSource(const FileSource&) = delete;
  FileSource& operator=(const FileSource&) = delete;
  std::size_t read(std::byte* out, std::size_t size) override;
  bool seek(std::uint64_t offset) override;

 private:
  std::string path_;
  int descriptor_ = -1;
};

// Bytes owned elsewhere; they must outlive the source.
class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(std::span<const std::byte> bytes) : bytes_(bytes) {}
  std::size_t read(std::byte* out, std::size_t size) override;
  bool seek(std::uint64_t offset) override;

 private:
  std::span<const std::byte> bytes_;
  std::size_t position_ = 0;
};

// Inflates a zlib or gzip stream (several concatenated gzip members too, as some writers produce).
// `file` names the file in CorruptRecordError messages.
class InflateSource final : public ByteSource {
 public:
  InflateSource(std::unique_ptr<ByteSource> compressed, Compression format, std::string file);
  ~InflateSource() override;
  InflateSource(const InflateSource&) = delete;
  InflateSource& operator=(const InflateSource&) = delete;
  std::size_t read(std::byte* out, std::size_t size) override;

 private:
  void inflate_into(std::byte* out, std::size_t size, std::size_t& total);
  struct State;
  std::unique_ptr<ByteSource> compressed_;
  std::unique_ptr<State> state_;
  std::string file_;
  std::vector<std::byte> input_;
  bool input_exhausted_ = false;
  bool stream_ended_ = false;
  std::uint64_t produced_ = 0;
  // Damage found after some bytes of a read were produced is reported by the next read, so the
  // caller first gets every good byte.
  std::exception_ptr pending_error_;
};

// Guesses the compression of a TFRecord stream from its first bytes: a valid uncompressed record
// header (length + matching masked CRC) means none, 1f 8b means gzip, a zlib header (CMF/FLG
// check) means zlib. An empty or unrecognisable prefix is reported as none (the record reader then
// explains what is wrong).
Compression detect_compression(std::span<const std::byte> first_bytes);

// Opens `path` for reading, decompressing as `compression` says (detect: by the first bytes).
// `detected` (optional) receives the compression actually used.
std::unique_ptr<ByteSource> open_file_source(const std::string& path, Compression compression,
                                             Compression* detected = nullptr);
// The same over bytes in memory (used by tests and fuzzers).
std::unique_ptr<ByteSource> open_memory_source(std::span<const std::byte> bytes,
                                               Compression compression, const std::string& name,
                                               Compression* detected = nullptr);

}  // namespace drgrad::io
