// Writes TFRecord files that TensorFlow reads: framing with masked CRC32Cs, optionally compressed
// as one GZIP or ZLIB stream (TFRecordOptions' formats). The file appears only on close().
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "io/util/byte_source.h"

namespace drgrad::io {

class AtomicFileWriter;

struct TfRecordWriterOptions {
  Compression compression = Compression::none;  // none, gzip or zlib
  int compression_level = -1;                   // zlib level 0..9; -1 = zlib's default (6)
};

class TfRecordWriter {
 public:
  // Starts writing `path` (through a temporary file in the same folder). Throws
  // std::invalid_argument for Compression::detect, std::runtime_error if the folder is unwritable.
  explicit TfRecordWriter(const std::string& path, TfRecordWriterOptions options = {});
  // Without close(), the destructor discards everything: `path` is left as it was.
  ~TfRecordWriter();
  TfRecordWriter(const TfRecordWriter&) = delete;
  TfRecordWriter& operator=(const TfRecordWriter&) = delete;

  void write(std::span<const std::byte> payload);
  void write(std::string_view payload);
  // Finishes the compressed stream, fsyncs and renames the file into place.
  void close();
  std::int64_t records_written() const { return records_written_; }

 private:
  struct Deflater;
  void emit(const std::byte* data, std::size_t size);

  std::unique_ptr<AtomicFileWriter> file_;
  std::unique_ptr<Deflater> deflater_;
  std::int64_t records_written_ = 0;
  bool closed_ = false;
};

// Whole-buffer zlib/gzip compression and decompression, for tests and tools. `level` as above.
std::string compress_bytes(std::string_view bytes, Compression compression, int level = -1);
std::string decompress_bytes(std::string_view bytes, Compression compression,
                             const std::string& name = "<memory>");

}  // namespace drgrad::io
