// TfRecordReader: buffered parsing of TFRecord framing with checksum verification. Records are
// returned as views into one reusable buffer, so reading does not allocate per record.
#include "io/tfrecord/tfrecord_reader.h"

#include <cstring>

#include "io/util/crc32c.h"
#include "io/util/errors.h"
#include "io/util/little_endian.h"

namespace drgrad::io {
namespace {
constexpr std::size_t kReadChunkBytes = 256 * 1024;
}

TfRecordReader::TfRecordReader(const std::string& path, TfRecordReaderOptions options)
    : name_(path), options_(options) {
  source_ = open_file_source(path, options.compression, &compression_);
}

TfRecordReader::TfRecordReader(std::unique_ptr<ByteSource> source, std::string name,
                               Compression compression, TfRecordReaderOptions options)
    : source_(std::move(source)),
      name_(std::move(name)),
      compression_(compression),
      options_(options) {}

TfRecordReader::~TfRecordReader() = default;
TfRecordReader::TfRecordReader(TfRecordReader&&) noexcept = default;
TfRecordReader& TfRecordReader::operator=(TfRecordReader&&) noexcept = default;

std::size_t TfRecordReader::ensure(std::size_t bytes) {
  if (end_ - begin_ >= bytes || source_ended_) return end_ - begin_;
  if (begin_ > 0) {
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (buffer_.size() < bytes) buffer_.resize(std::max(bytes, kReadChunkBytes));
  while (end_ < bytes && !source_ended_) {
    // Fill the whole free space: one large read serves many small records.
    std::size_t got = 0;
    try {
      got = source_->read(buffer_.data() + end_, buffer_.size() - end_);
    } catch (const CorruptRecordError& error) {
      // Damage inside the compressed stream: name the record being read.
      if (!options_.skip_corrupt) {
        fail(error.problem(), error.truncated() ? kAdviceTruncated : kAdviceCorrupt,
             error.truncated());
      }
      ++skipped_;
      source_damaged_ = true;
      source_ended_ = true;
      break;
    }
    if (got == 0) source_ended_ = true;
    end_ += got;
  }
  return end_ - begin_;
}

void TfRecordReader::fail(const std::string& problem, const char* advice, bool truncated) const {
  RecordLocation where{name_, record_index_, static_cast<std::int64_t>(offset_),
                       compression_ != Compression::none};
  throw CorruptRecordError(where, problem, advice, truncated);
}

TfRecordReader::Step TfRecordReader::read_one(std::span<const std::byte>& record,
                                              bool check_payload) {
  if (stopped_) return Step::end;
  const std::size_t available = ensure(tfrecord::kHeaderBytes);
  if (available == 0) return Step::end;
  if (available < tfrecord::kHeaderBytes) {
    if (options_.skip_corrupt) {
      if (!source_damaged_) ++skipped_;
      stopped_ = true;
      return Step::end;
    }
    fail("the file ends inside a record header (" + std::to_string(available) + " of " +
             std::to_string(tfrecord::kHeaderBytes) + " bytes)",
         kAdviceTruncated, true);
  }
  const std::byte* header = buffer_.data() + begin_;
  const auto length = load_le<std::uint64_t>(header);
  const auto stored_length_crc = load_le<std::uint32_t>(header + tfrecord::kLengthBytes);
  if (stored_length_crc != mask_crc32c(crc32c(header, tfrecord::kLengthBytes))) {
    if (options_.skip_corrupt) {
      ++skipped_;
      stopped_ = true;
      return Step::end;
    }
    fail(
        "the checksum of the record length does not match (the length field or its checksum is "
        "damaged, or this is not a TFRecord file; compressed files need compression=gzip/zlib)",
        kAdviceCorrupt, false);
  }
  if (length > options_.max_record_bytes) {
    if (options_.skip_corrupt) {
      ++skipped_;
      stopped_ = true;
      return Step::end;
    }
    fail("the record claims " + std::to_string(length) + " bytes, more than the limit of " +
             std::to_string(options_.max_record_bytes),
         "raise max_record_bytes if the record is genuine, otherwise the file is damaged", false);
  }
  const std::size_t total = tfrecord::kFramingBytes + static_cast<std::size_t>(length);
  const std::size_t have = ensure(total);
  if (have < total) {
    if (options_.skip_corrupt) {
      if (!source_damaged_) ++skipped_;
      stopped_ = true;
      return Step::end;
    }
    fail("the file ends inside the record (it needs " + std::to_string(total) + " bytes, " +
             std::to_string(have) + " remain)",
         kAdviceTruncated, true);
  }
  const std::byte* payload = buffer_.data() + begin_ + tfrecord::kHeaderBytes;
  bool payload_ok = true;
  if (check_payload) {
    const auto stored = load_le<std::uint32_t>(payload + length);
    payload_ok = stored == mask_crc32c(crc32c(payload, static_cast<std::size_t>(length)));
  }
  if (!payload_ok) {
    if (!options_.skip_corrupt) {
      fail("the checksum of the record payload (" + std::to_string(length) +
               " bytes) does not match",
           kAdviceCorrupt, false);
    }
    ++skipped_;
  } else {
    record = std::span<const std::byte>(payload, static_cast<std::size_t>(length));
  }
  begin_ += total;
  offset_ += total;
  ++record_index_;
  return payload_ok ? Step::record : Step::skipped;
}

bool TfRecordReader::next(std::span<const std::byte>& record) {
  while (true) {
    const Step step = read_one(record, true);
    if (step == Step::record) return true;
    if (step == Step::end) return false;
  }
}

bool TfRecordReader::skip() {
  std::span<const std::byte> ignored;
  return read_one(ignored, false) != Step::end;
}

bool TfRecordReader::seek(std::uint64_t byte_offset, std::int64_t record_index) {
  if (compression_ != Compression::none) return false;
  if (!source_->seek(byte_offset)) return false;
  begin_ = end_ = 0;
  source_ended_ = false;
  stopped_ = false;
  offset_ = byte_offset;
  record_index_ = record_index;
  return true;
}

std::int64_t count_tfrecords(const std::string& path, Compression compression) {
  TfRecordReaderOptions options;
  options.compression = compression;
  TfRecordReader reader(path, options);
  while (reader.skip()) {
  }
  return reader.record_index();
}

}  // namespace drgrad::io
