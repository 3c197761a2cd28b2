// Exceptions the io layer throws for bad data. Each names the file, the record index and the byte
// offset where the problem was found, and its message says what to do next.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace drgrad::io {

// Where in a file a problem was found. record_index and byte_offset are -1 when unknown; for a
// compressed file byte_offset counts bytes of the decompressed stream.
struct RecordLocation {
  std::string file;
  std::int64_t record_index = -1;
  std::int64_t byte_offset = -1;
  bool offset_in_decompressed_stream = false;

  // "file 'a.tfrecord', record 3, byte offset 120"
  std::string describe() const;
};

// Base class of every error about the content of a data file.
class DataError : public std::runtime_error {
 public:
  DataError(RecordLocation location, const std::string& problem, const std::string& advice);
  const RecordLocation& location() const { return location_; }
  const std::string& problem() const { return problem_; }

 private:
  RecordLocation location_;
  std::string problem_;
};

// The bytes of a record or file are damaged: bad checksum, truncated record, wrong magic number,
// unsupported version, or a payload that does not parse. truncated() is true when the file ends
// inside a record (the writer probably crashed before finishing the file).
class CorruptRecordError : public DataError {
 public:
  CorruptRecordError(RecordLocation location, const std::string& problem, const std::string& advice,
                     bool truncated = false)
      : DataError(std::move(location), problem, advice), truncated_(truncated) {}
  bool truncated() const { return truncated_; }

 private:
  bool truncated_;
};

// The file is intact but was written for another schema than the one the reader expects.
class SchemaMismatchError : public DataError {
 public:
  using DataError::DataError;
};

// Advice strings shared by several readers.
inline constexpr const char* kAdviceCorrupt =
    "the file is damaged; re-create it from its source, or read with skip_corrupt=true to skip "
    "damaged records";
inline constexpr const char* kAdviceTruncated =
    "the file ends inside a record: the writer probably crashed before finishing it; re-create the "
    "file, or read with skip_corrupt=true to use the complete records before the cut";

}  // namespace drgrad::io
