// ShardFile: opening (header, locator, index), crash recovery by scanning, and block reads with
// pread so that several decode threads can share one open file.
#include "io/shard/shard_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "io/tfrecord/tfrecord_format.h"
#include "io/util/crc32c.h"
#include "io/util/errors.h"
#include "io/util/little_endian.h"

namespace drgrad::io {

namespace {
constexpr const char* kAdviceNotShard =
    "check the path: this file is not a drgrad shard (convert data with the drgrad CSV or "
    "TFRecord converters)";
constexpr const char* kAdviceVersion =
    "the shard was written by a different drgrad version; re-create it with this version, or "
    "read it with the version that wrote it";

// An open file descriptor, closed on destruction. Throws std::runtime_error naming the path.
class OpenFile {
 public:
  explicit OpenFile(const std::string& path)
      : descriptor_(::open(path.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (descriptor_ < 0) {
      throw std::runtime_error("cannot open shard '" + path + "': " + std::strerror(errno) +
                               "; check the path and its permissions");
    }
  }
  ~OpenFile() { ::close(descriptor_); }
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;
  int descriptor() const { return descriptor_; }

 private:
  int descriptor_;
};

// pread until `size` bytes or end of file; returns bytes read.
std::size_t read_at(int descriptor, std::uint64_t offset, std::byte* out, std::size_t size,
                    const std::string& path) {
  std::size_t total = 0;
  while (total < size) {
    const ssize_t got =
        ::pread(descriptor, out + total, size - total, static_cast<off_t>(offset + total));
    if (got < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("cannot read '" + path + "': " + std::strerror(errno));
    }
    if (got == 0) break;
    total += static_cast<std::size_t>(got);
  }
  return total;
}
}  // namespace

ShardFile::ShardFile(const std::string& path, ShardOpenOptions options) : path_(path) {
  // The descriptor is held only while opening; read_block opens the file again, so a reader over
  // thousands of shards does not run out of descriptors.
  const OpenFile file(path);
  const int descriptor = file.descriptor();
  struct stat info;
  if (::fstat(descriptor, &info) != 0) {
    throw std::runtime_error("cannot stat '" + path + "': " + std::strerror(errno));
  }
  file_size_ = static_cast<std::uint64_t>(info.st_size);
  if (file_size_ == 0) {
    fail(0, 0, "the file is empty, a shard starts with a header record",
         "the writer probably crashed before writing anything; re-create the shard");
  }
  std::vector<std::byte> scratch;
  const auto payload = read_record(descriptor, 0, 0, scratch, "header");
  header_record_bytes_ = tfrecord::kFramingBytes + payload.size();
  try {
    header_ = decode_shard_header(payload);
  } catch (const ShardPayloadError& error) {
    const bool wrong_magic =
        payload.size() < sizeof(shard::kHeaderMagic) ||
        std::memcmp(payload.data(), shard::kHeaderMagic, sizeof(shard::kHeaderMagic)) != 0;
    fail(0, 0, error.what(), wrong_magic ? kAdviceNotShard : kAdviceCorrupt);
  }
  if (header_.version != shard::kFormatVersion) {
    fail(0, 0,
         "the shard has format version " + std::to_string(header_.version) +
             ", this build reads version " + std::to_string(shard::kFormatVersion),
         kAdviceVersion);
  }
  if (options.expected_schema &&
      options.expected_schema->fingerprint() != header_.schema.fingerprint()) {
    throw SchemaMismatchError(
        RecordLocation{path_, 0, 0, false},
        "the shard's schema [" + header_.schema.describe() + "] differs from the expected [" +
            options.expected_schema->describe() + "]",
        "convert the data again with the current schema, or point the reader at the right "
        "shards");
  }
  try {
    load_index(descriptor, scratch);
  } catch (const CorruptRecordError&) {
    if (!options.skip_corrupt) throw;
    scan_blocks(descriptor, scratch, header_record_bytes_);
  }
}

void ShardFile::fail(std::int64_t record_index, std::uint64_t offset, const std::string& problem,
                     const char* advice, bool truncated) const {
  throw CorruptRecordError(
      RecordLocation{path_, record_index, static_cast<std::int64_t>(offset), false}, problem,
      advice, truncated);
}

std::span<const std::byte> ShardFile::read_record(int descriptor, std::uint64_t offset,
                                                  std::int64_t record_index,
                                                  std::vector<std::byte>& scratch,
                                                  const char* what) const {
  if (offset > file_size_ || file_size_ - offset < tfrecord::kHeaderBytes) {
    fail(record_index, offset,
         std::string("the file ends inside the ") + what + " record's header (" +
             std::to_string(file_size_ - std::min(offset, file_size_)) + " bytes left)",
         kAdviceTruncated, true);
  }
  std::byte header[tfrecord::kHeaderBytes];
  read_at(descriptor, offset, header, sizeof(header), path_);
  const auto length = load_le<std::uint64_t>(header);
  if (load_le<std::uint32_t>(header + tfrecord::kLengthBytes) !=
      mask_crc32c(crc32c(header, tfrecord::kLengthBytes))) {
    fail(record_index, offset,
         std::string("the checksum of the ") + what + " record's length does not match",
         kAdviceCorrupt);
  }
  const std::uint64_t available = file_size_ - offset - tfrecord::kHeaderBytes;
  if (length > available || available - length < tfrecord::kFooterBytes) {
    fail(record_index, offset,
         std::string("the file ends inside the ") + what + " record (it needs " +
             std::to_string(length + tfrecord::kFramingBytes) + " bytes, " +
             std::to_string(available + tfrecord::kHeaderBytes) + " remain)",
         kAdviceTruncated, true);
  }
  scratch.resize(static_cast<std::size_t>(length) + tfrecord::kFooterBytes);
  const std::size_t got =
      read_at(descriptor, offset + tfrecord::kHeaderBytes, scratch.data(), scratch.size(), path_);
  if (got != scratch.size()) {
    fail(record_index, offset, "the file shrank while being read", kAdviceTruncated, true);
  }
  const std::span<const std::byte> payload(scratch.data(), static_cast<std::size_t>(length));
  if (load_le<std::uint32_t>(scratch.data() + length) != mask_crc32c(crc32c(payload))) {
    fail(record_index, offset,
         std::string("the checksum of the ") + what + " record's payload (" +
             std::to_string(length) + " bytes) does not match",
         kAdviceCorrupt);
  }
  return payload;
}

void ShardFile::load_index(int descriptor, std::vector<std::byte>& scratch) {
  if (file_size_ < header_record_bytes_ + shard::kLocatorRecordBytes) {
    fail(-1, file_size_,
         "the file ends before its index: the writer probably crashed before close()",
         kAdviceTruncated, true);
  }
  const std::uint64_t locator_offset = file_size_ - shard::kLocatorRecordBytes;
  std::span<const std::byte> locator;
  try {
    locator = read_record(descriptor, locator_offset, -1, scratch, "locator");
  } catch (const CorruptRecordError& error) {
    fail(-1, locator_offset,
         std::string("the file does not end with a valid locator record (") + error.problem() +
             "): the writer probably crashed before close(), or the end of the file is damaged",
         kAdviceTruncated, true);
  }
  if (locator.size() != shard::kLocatorPayloadBytes ||
      std::memcmp(locator.data() + 8, shard::kLocatorMagic, sizeof(shard::kLocatorMagic)) != 0) {
    fail(-1, locator_offset, "the last record is not a shard locator (wrong size or magic)",
         kAdviceTruncated, true);
  }
  const auto index_offset = load_le<std::uint64_t>(locator.data());
  if (index_offset < header_record_bytes_ || index_offset >= locator_offset) {
    fail(-1, locator_offset,
         "the locator points at byte " + std::to_string(index_offset) + ", outside the file body",
         kAdviceCorrupt);
  }
  const auto index = read_record(descriptor, index_offset, -1, scratch, "index");
  if (index.size() < shard::kIndexFixedBytes ||
      std::memcmp(index.data(), shard::kIndexMagic, sizeof(shard::kIndexMagic)) != 0) {
    fail(-1, index_offset, "the index record has the wrong magic (expected \"DRGINDEX\")",
         kAdviceCorrupt);
  }
  const auto block_count = load_le<std::uint64_t>(index.data() + 8);
  const auto total = load_le<std::uint64_t>(index.data() + 16);
  if ((index.size() - shard::kIndexFixedBytes) / shard::kIndexEntryBytes != block_count ||
      (index.size() - shard::kIndexFixedBytes) % shard::kIndexEntryBytes != 0) {
    fail(-1, index_offset,
         "the index claims " + std::to_string(block_count) + " blocks but holds " +
             std::to_string(index.size()) + " bytes",
         kAdviceCorrupt);
  }
  blocks_.resize(static_cast<std::size_t>(block_count));
  std::uint64_t sum = 0;
  std::uint64_t previous_end = header_record_bytes_;
  for (std::size_t i = 0; i < blocks_.size(); ++i) {
    const std::byte* entry = index.data() + shard::kIndexFixedBytes + i * shard::kIndexEntryBytes;
    blocks_[i].byte_offset = load_le<std::uint64_t>(entry);
    blocks_[i].samples = load_le<std::uint64_t>(entry + 8);
    if (blocks_[i].byte_offset < previous_end || blocks_[i].byte_offset >= index_offset ||
        blocks_[i].samples > (std::uint64_t{1} << 40)) {
      fail(-1, index_offset, "index entry " + std::to_string(i) + " is out of order or range",
           kAdviceCorrupt);
    }
    previous_end = blocks_[i].byte_offset + tfrecord::kFramingBytes;
    sum += blocks_[i].samples;
  }
  if (sum != total) {
    fail(-1, index_offset,
         "the index's block sample counts sum to " + std::to_string(sum) + ", not the stored " +
             std::to_string(total),
         kAdviceCorrupt);
  }
  total_samples_ = static_cast<std::int64_t>(total);
}

void ShardFile::scan_blocks(int descriptor, std::vector<std::byte>& scratch,
                            std::uint64_t first_block_offset) {
  blocks_.clear();
  total_samples_ = 0;
  recovered_by_scan_ = true;
  std::uint64_t offset = first_block_offset;
  std::int64_t record_index = 1;
  while (offset < file_size_) {
    std::span<const std::byte> payload;
    try {
      payload = read_record(descriptor, offset, record_index, scratch, "block");
    } catch (const CorruptRecordError&) {
      ++skipped_;  // the damaged or cut tail
      return;
    }
    // The index record ends the blocks.
    if (payload.size() >= sizeof(shard::kIndexMagic) &&
        std::memcmp(payload.data(), shard::kIndexMagic, sizeof(shard::kIndexMagic)) == 0) {
      return;
    }
    std::uint64_t samples = 0;
    try {
      samples = BlockDecoder::sample_count(payload);
    } catch (const ShardPayloadError&) {
      ++skipped_;
      return;
    }
    blocks_.push_back({offset, samples});
    total_samples_ += static_cast<std::int64_t>(samples);
    offset += tfrecord::kFramingBytes + payload.size();
    ++record_index;
  }
}

void ShardFile::read_block(std::int64_t block, BlockDecoder& decoder,
                           std::vector<std::byte>& scratch, Batch& out) const {
  if (block < 0 || block >= num_blocks()) {
    throw std::out_of_range("ShardFile::read_block: block " + std::to_string(block) + " of " +
                            std::to_string(num_blocks()) + " in '" + path_ + "'");
  }
  const ShardBlockInfo& info = blocks_[static_cast<std::size_t>(block)];
  const OpenFile file(path_);
  const auto payload =
      read_record(file.descriptor(), info.byte_offset, block + 1, scratch, "block");
  try {
    decoder.decode(payload, header_.schema, header_.codec, out);
  } catch (const ShardPayloadError& error) {
    fail(block + 1, info.byte_offset,
         std::string("block ") + std::to_string(block) + ": " + error.what(), kAdviceCorrupt);
  }
  if (static_cast<std::uint64_t>(out.size) != info.samples) {
    fail(block + 1, info.byte_offset,
         "block " + std::to_string(block) + " holds " + std::to_string(out.size) +
             " samples, the index says " + std::to_string(info.samples),
         kAdviceCorrupt);
  }
}

std::string describe_shard(const ShardFile& file) {
  const ShardHeader& header = file.header();
  const Schema& schema = file.schema();
  std::string text;
  auto line = [&](const std::string& key, const std::string& value) {
    text += key + ": " + value + "\n";
  };
  line("file", file.path());
  line("format", "drgrad shard version " + std::to_string(header.version));
  line("codec", to_string(header.codec) + (header.codec == shard::BlockCodec::zstd
                                               ? " (level " + std::to_string(header.level) + ")"
                                               : std::string()));
  line("size", std::to_string(file.file_size()) + " bytes");
  line("blocks", std::to_string(file.num_blocks()));
  line("samples", std::to_string(file.total_samples()));
  if (file.recovered_by_scan()) {
    line("warning", "the index is missing or damaged; blocks were found by scanning");
  }
  char fingerprint[32];
  std::snprintf(fingerprint, sizeof(fingerprint), "%016llx",
                static_cast<unsigned long long>(schema.fingerprint()));
  line("schema fingerprint", fingerprint);
  for (const auto& name : schema.dense_features) line("dense", name);
  for (const auto& slot : schema.sparse_slots) {
    line("sparse", slot.name + " (vocabulary " + std::to_string(slot.vocabulary_size) + ")");
  }
  for (const auto& name : schema.labels) line("label", name);
  return text;
}

}  // namespace drgrad::io
