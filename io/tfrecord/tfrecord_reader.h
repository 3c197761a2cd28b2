// Sequential reader of TFRecord files (uncompressed, GZIP or ZLIB), checking both masked CRC32Cs
// of every record. Damage is reported as CorruptRecordError naming file, record and offset.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/tfrecord/tfrecord_format.h"
#include "io/util/byte_source.h"

namespace drgrad::io {

struct TfRecordReaderOptions {
  Compression compression = Compression::detect;
  // Skip damaged records instead of throwing. A bad payload checksum skips that record; a bad
  // length checksum or a truncated record ends the file (the records after it cannot be found).
  bool skip_corrupt = false;
  std::uint64_t max_record_bytes = tfrecord::kDefaultMaxRecordBytes;
};

class TfRecordReader {
 public:
  // Opens `path`; throws std::runtime_error when it cannot be opened.
  TfRecordReader(const std::string& path, TfRecordReaderOptions options = {});
  // Reads from an already opened stream; `name` is used in error messages. `compression` tells
  // whether `source` is a decompressed stream (for messages) and must not be `detect`.
  TfRecordReader(std::unique_ptr<ByteSource> source, std::string name, Compression compression,
                 TfRecordReaderOptions options = {});
  ~TfRecordReader();
  TfRecordReader(TfRecordReader&&) noexcept;
  TfRecordReader& operator=(TfRecordReader&&) noexcept;

  // Reads the next record. On success `record` views its payload, valid until the next call on
  // this reader, and true is returned; false at the end of the file. Throws CorruptRecordError
  // (unless skip_corrupt).
  bool next(std::span<const std::byte>& record);
  // Steps over the next record checking only its length checksum (for positioning); false at end.
  bool skip();
  // One step: a good record (viewed as in next()), the end, or (with skip_corrupt) a damaged
  // record that was stepped over. Lets callers count records exactly, damaged ones included.
  enum class Step { record, end, skipped };
  Step read(std::span<const std::byte>& record) { return read_one(record, true); }
  // Positions the reader at the record starting at `byte_offset`, which is record number
  // `record_index`. Only for uncompressed files (returns false otherwise, position unchanged).
  bool seek(std::uint64_t byte_offset, std::int64_t record_index);

  // Index of the record the next call returns, and its byte offset in the (decompressed) stream.
  std::int64_t record_index() const { return record_index_; }
  std::uint64_t byte_offset() const { return offset_; }
  std::int64_t corrupt_records_skipped() const { return skipped_; }
  Compression compression() const { return compression_; }
  const std::string& name() const { return name_; }

 private:
  Step read_one(std::span<const std::byte>& record, bool check_payload);
  std::size_t ensure(std::size_t bytes);
  [[noreturn]] void fail(const std::string& problem, const char* advice, bool truncated) const;

  std::unique_ptr<ByteSource> source_;
  std::string name_;
  Compression compression_;
  TfRecordReaderOptions options_;
  std::vector<std::byte> buffer_;
  std::size_t begin_ = 0;  // first unread byte in buffer_
  std::size_t end_ = 0;    // one past the last valid byte in buffer_
  bool source_ended_ = false;
  bool stopped_ = false;         // after an unrecoverable damage with skip_corrupt
  bool source_damaged_ = false;  // the decompressor met damage (already counted as skipped)
  std::int64_t record_index_ = 0;
  std::uint64_t offset_ = 0;
  std::int64_t skipped_ = 0;
};

// Counts the records of a TFRecord file (reads it through, checking length checksums only).
std::int64_t count_tfrecords(const std::string& path,
                             Compression compression = Compression::detect);

}  // namespace drgrad::io
