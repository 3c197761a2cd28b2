// Damage on purpose, one named case each: flipped bytes in every framing field, cut files, empty
// files, wrong magic and version, damaged compressed streams. Every case must raise a
// CorruptRecordError that names the file, the record and the offset, never crash.
#include <catch2/catch.hpp>

#include "io/shard/shard_block.h"
#include "io/shard/shard_file.h"
#include "io/shard/shard_format.h"
#include "io/shard/shard_writer.h"
#include "io/tfrecord/tfrecord_format.h"
#include "io/tfrecord/tfrecord_reader.h"
#include "io/tfrecord/tfrecord_writer.h"
#include "io/util/crc32c.h"
#include "io/util/errors.h"
#include "io/util/little_endian.h"
#include "tests/io/test_support.h"

using namespace drgrad::io;
using namespace drgrad::io::testing;

namespace {

// Three records "first", "second record", "third" in a plain TFRecord file. Record 1 starts at
// byte 21 (16 framing + 5 payload bytes of record 0).
constexpr std::size_t kRecord1 = 21;

struct DamagedTfRecord {
  TemporaryFolder folder;
  std::string path = folder.file("damaged.tfrecord");
  std::string bytes;
  DamagedTfRecord() {
    for (const char* payload : {"first", "second record", "third"}) {
      tfrecord::append_record(bytes, std::string_view(payload));
    }
  }
  void write() const { write_whole_file(path, bytes); }
};

std::vector<std::string> read_all(const std::string& path, bool skip_corrupt,
                                  std::int64_t* skipped = nullptr) {
  TfRecordReaderOptions options;
  options.skip_corrupt = skip_corrupt;
  TfRecordReader reader(path, options);
  std::vector<std::string> records;
  std::span<const std::byte> record;
  while (reader.next(record)) records.push_back(as_string(record));
  if (skipped) *skipped = reader.corrupt_records_skipped();
  return records;
}

// Reads `path` expecting a CorruptRecordError at `record`, `offset`; returns it.
CorruptRecordError expect_tfrecord_error(const std::string& path, std::int64_t record,
                                         std::int64_t offset) {
  try {
    read_all(path, false);
  } catch (const CorruptRecordError& error) {
    CHECK(error.location().file == path);
    CHECK(error.location().record_index == record);
    CHECK(error.location().byte_offset == offset);
    CHECK_THAT(error.what(), Catch::Contains(path));
    CHECK_THAT(error.what(), Catch::Contains("record " + std::to_string(record)));
    return error;
  }
  FAIL("no CorruptRecordError for " << path);
  throw std::logic_error("unreachable");
}

struct DamagedShard {
  TemporaryFolder folder;
  Schema schema = make_schema(3, 2, 1);
  std::string path = folder.file("damaged.drgrad");
  std::string bytes;
  std::vector<ShardBlockInfo> blocks;
  DamagedShard() {
    write_shard(path, schema, make_batch(schema, 100, 3), {shard::BlockCodec::zstd, 3, 40});
    bytes = read_whole_file(path);
    blocks = ShardFile(path).blocks();
  }
  void write() const { write_whole_file(path, bytes); }
};

CorruptRecordError expect_shard_open_error(const std::string& path) {
  try {
    ShardFile file(path);
  } catch (const CorruptRecordError& error) {
    CHECK(error.location().file == path);
    CHECK_THAT(error.what(), Catch::Contains(path));
    return error;
  }
  FAIL("no CorruptRecordError opening " << path);
  throw std::logic_error("unreachable");
}

CorruptRecordError expect_block_error(const std::string& path, std::int64_t block) {
  const ShardFile file(path);
  BlockDecoder decoder;
  std::vector<std::byte> scratch;
  Batch batch;
  try {
    file.read_block(block, decoder, scratch, batch);
  } catch (const CorruptRecordError& error) {
    CHECK(error.location().record_index == block + 1);
    CHECK(error.location().byte_offset ==
          static_cast<std::int64_t>(file.blocks()[block].byte_offset));
    return error;
  }
  FAIL("no CorruptRecordError reading block " << block);
  throw std::logic_error("unreachable");
}

}  // namespace

// ---- TFRecord ----

TEST_CASE("corruption: tfrecord flipped byte in the length", "[corruption]") {
  DamagedTfRecord file;
  file.bytes[kRecord1 + 0] ^= 0x01;
  file.write();
  const auto error = expect_tfrecord_error(file.path, 1, kRecord1);
  CHECK_FALSE(error.truncated());
  CHECK_THAT(error.what(), Catch::Contains("length does not match"));
  std::int64_t skipped = 0;
  CHECK(read_all(file.path, true, &skipped) == std::vector<std::string>{"first"});
  CHECK(skipped == 1);
}

TEST_CASE("corruption: tfrecord flipped byte in the length crc", "[corruption]") {
  DamagedTfRecord file;
  file.bytes[kRecord1 + 9] ^= 0x80;
  file.write();
  expect_tfrecord_error(file.path, 1, kRecord1);
}

TEST_CASE("corruption: tfrecord flipped byte in the payload", "[corruption]") {
  DamagedTfRecord file;
  file.bytes[kRecord1 + 12 + 3] ^= 0x20;
  file.write();
  const auto error = expect_tfrecord_error(file.path, 1, kRecord1);
  CHECK_THAT(error.what(), Catch::Contains("payload"));
  CHECK_THAT(error.what(), Catch::Contains("skip_corrupt"));
  // The length is intact, so skip_corrupt skips just this record and reads on.
  std::int64_t skipped = 0;
  CHECK(read_all(file.path, true, &skipped) == std::vector<std::string>{"first", "third"});
  CHECK(skipped == 1);
}

TEST_CASE("corruption: tfrecord flipped byte in the payload crc", "[corruption]") {
  DamagedTfRecord file;
  file.bytes[kRecord1 + 12 + 13 + 2] ^= 0x04;
  file.write();
  expect_tfrecord_error(file.path, 1, kRecord1);
  std::int64_t skipped = 0;
  CHECK(read_all(file.path, true, &skipped).size() == 2);
  CHECK(skipped == 1);
}

TEST_CASE("corruption: tfrecord truncated header", "[corruption]") {
  DamagedTfRecord file;
  file.bytes.resize(file.bytes.size() - (16 + 5) + 7);  // 7 bytes of record 2's header remain
  file.write();
  const auto error = expect_tfrecord_error(file.path, 2, kRecord1 + 16 + 13);
  CHECK(error.truncated());
  CHECK_THAT(error.what(), Catch::Contains("writer probably crashed"));
  std::int64_t skipped = 0;
  CHECK(read_all(file.path, true, &skipped).size() == 2);
  CHECK(skipped == 1);
}

TEST_CASE("corruption: tfrecord truncated payload", "[corruption]") {
  DamagedTfRecord file;
  file.bytes.resize(file.bytes.size() - 6);  // record 2 loses its CRC and one payload byte
  file.write();
  const auto error = expect_tfrecord_error(file.path, 2, kRecord1 + 16 + 13);
  CHECK(error.truncated());
  CHECK_THAT(error.what(), Catch::Contains("writer probably crashed"));
}

TEST_CASE("corruption: tfrecord empty file is a file with no records", "[corruption]") {
  // TensorFlow treats an empty TFRecord file as zero records; so do we.
  DamagedTfRecord file;
  file.bytes.clear();
  file.write();
  CHECK(read_all(file.path, false).empty());
}

TEST_CASE("corruption: tfrecord record length above the limit", "[corruption]") {
  DamagedTfRecord file;
  std::byte header[tfrecord::kHeaderBytes];
  tfrecord::encode_header(std::uint64_t{1} << 40, header);  // a valid CRC over a huge length
  file.bytes.replace(kRecord1, tfrecord::kHeaderBytes, reinterpret_cast<const char*>(header),
                     tfrecord::kHeaderBytes);
  file.write();
  const auto error = expect_tfrecord_error(file.path, 1, kRecord1);
  CHECK_THAT(error.what(), Catch::Contains("limit"));
}

TEST_CASE("corruption: gzip stream with a flipped byte", "[corruption]") {
  DamagedTfRecord file;
  std::string compressed = compress_bytes(file.bytes, Compression::gzip);
  compressed[compressed.size() / 2] ^= 0xff;
  write_whole_file(file.path, compressed);
  CHECK_THROWS_AS(read_all(file.path, false), CorruptRecordError);
  std::int64_t skipped = 0;
  CHECK_NOTHROW(read_all(file.path, true, &skipped));
  CHECK(skipped >= 1);
}

TEST_CASE("corruption: gzip stream cut short", "[corruption]") {
  DamagedTfRecord file;
  const std::string compressed = compress_bytes(file.bytes, Compression::gzip);
  write_whole_file(file.path, compressed.substr(0, compressed.size() - 10));
  try {
    read_all(file.path, false);
    FAIL("no error");
  } catch (const CorruptRecordError& error) {
    CHECK(error.truncated());
    CHECK(error.location().offset_in_decompressed_stream);
    CHECK_THAT(error.what(), Catch::Contains("writer probably crashed"));
  }
}

// ---- drgrad shards ----

TEST_CASE("corruption: shard empty file", "[corruption]") {
  DamagedShard shard;
  shard.bytes.clear();
  shard.write();
  const auto error = expect_shard_open_error(shard.path);
  CHECK_THAT(error.what(), Catch::Contains("empty"));
}

TEST_CASE("corruption: shard wrong magic", "[corruption]") {
  DamagedShard shard;
  // Rewrite the header record with a different magic but valid checksums.
  std::string header_payload = shard.bytes.substr(12, shard.blocks[0].byte_offset - 16);
  header_payload[0] = 'X';
  std::string rebuilt;
  tfrecord::append_record(rebuilt, std::string_view(header_payload));
  shard.bytes.replace(0, rebuilt.size(), rebuilt);
  shard.write();
  const auto error = expect_shard_open_error(shard.path);
  CHECK_THAT(error.what(), Catch::Contains("wrong magic"));
  CHECK_THAT(error.what(), Catch::Contains("not a drgrad shard"));
}

TEST_CASE("corruption: shard wrong version", "[corruption]") {
  DamagedShard shard;
  std::string header_payload = shard.bytes.substr(12, shard.blocks[0].byte_offset - 16);
  store_le<std::uint32_t>(header_payload.data() + shard::kHeaderVersionOffset, 99);
  std::string rebuilt;
  tfrecord::append_record(rebuilt, std::string_view(header_payload));
  shard.bytes.replace(0, rebuilt.size(), rebuilt);
  shard.write();
  const auto error = expect_shard_open_error(shard.path);
  CHECK_THAT(error.what(), Catch::Contains("version 99"));
}

TEST_CASE("corruption: shard flipped byte in the header", "[corruption]") {
  DamagedShard shard;
  shard.bytes[12 + 40] ^= 0x10;
  shard.write();
  const auto error = expect_shard_open_error(shard.path);
  CHECK(error.location().record_index == 0);
  CHECK_THAT(error.what(), Catch::Contains("checksum"));
}

TEST_CASE("corruption: shard flipped byte in a block length", "[corruption]") {
  DamagedShard shard;
  shard.bytes[shard.blocks[1].byte_offset + 1] ^= 0x01;
  shard.write();
  const auto error = expect_block_error(shard.path, 1);
  CHECK_THAT(error.what(), Catch::Contains("length does not match"));
}

TEST_CASE("corruption: shard flipped byte in a block payload", "[corruption]") {
  DamagedShard shard;
  shard.bytes[shard.blocks[2].byte_offset + 12 + 30] ^= 0x01;
  shard.write();
  const auto error = expect_block_error(shard.path, 2);
  CHECK_THAT(error.what(), Catch::Contains("payload"));
}

TEST_CASE("corruption: shard flipped byte in a block crc", "[corruption]") {
  DamagedShard shard;
  shard.bytes[shard.blocks[1].byte_offset - 2] ^= 0x01;  // the CRC closing block 0
  shard.write();
  expect_block_error(shard.path, 0);
}

TEST_CASE("corruption: shard block with valid checksum but malformed content", "[corruption]") {
  DamagedShard shard;
  // Rewrite block 0 with a sample count that disagrees with its body, checksums recomputed.
  const std::uint64_t offset = shard.blocks[0].byte_offset;
  const auto length = load_le<std::uint64_t>(shard.bytes.data() + offset);
  std::string payload = shard.bytes.substr(offset + 12, length);
  store_le<std::uint64_t>(payload.data() + 8, 41);
  std::string rebuilt;
  tfrecord::append_record(rebuilt, std::string_view(payload));
  shard.bytes.replace(offset, rebuilt.size(), rebuilt);
  shard.write();
  const auto error = expect_block_error(shard.path, 0);
  CHECK_THAT(error.what(), Catch::Contains("block 0"));
}

TEST_CASE("corruption: shard truncated header", "[corruption]") {
  DamagedShard shard;
  shard.bytes.resize(7);
  shard.write();
  const auto error = expect_shard_open_error(shard.path);
  CHECK(error.truncated());
  CHECK_THAT(error.what(), Catch::Contains("writer probably crashed"));
}

TEST_CASE("corruption: shard truncated payload of the last block", "[corruption]") {
  DamagedShard shard;
  shard.bytes.resize(shard.blocks[2].byte_offset + 30);
  shard.write();
  const auto error = expect_shard_open_error(shard.path);
  CHECK(error.truncated());
  CHECK_THAT(error.what(), Catch::Contains("writer probably crashed"));
  ShardOpenOptions lenient;
  lenient.skip_corrupt = true;
  const ShardFile recovered(shard.path, lenient);
  CHECK(recovered.num_blocks() == 2);
  CHECK(recovered.total_samples() == 80);
  CHECK(recovered.corrupt_records_skipped() == 1);
}

TEST_CASE("corruption: shard damaged index", "[corruption]") {
  DamagedShard shard;
  const auto index_offset =
      load_le<std::uint64_t>(shard.bytes.data() + shard.bytes.size() - 32 + 12);
  shard.bytes[index_offset + 12 + 9] ^= 0x01;  // the block count
  shard.write();
  expect_shard_open_error(shard.path);
}

TEST_CASE("corruption: shard schema mismatch", "[corruption]") {
  DamagedShard shard;
  ShardOpenOptions options;
  options.expected_schema = make_schema(3, 2, 2);
  CHECK_THROWS_AS(ShardFile(shard.path, options), SchemaMismatchError);
}

TEST_CASE("corruption: shard random single-byte damage is always reported", "[corruption]") {
  DamagedShard shard;
  std::mt19937 generator(5);
  for (int trial = 0; trial < 300; ++trial) {
    std::string bytes = shard.bytes;
    const std::size_t at = generator() % bytes.size();
    bytes[at] = static_cast<char>(bytes[at] ^ (1 + generator() % 255));
    write_whole_file(shard.path, bytes);
    try {
      ShardFile file(shard.path);
      BlockDecoder decoder;
      std::vector<std::byte> scratch;
      Batch batch;
      for (std::int64_t b = 0; b < file.num_blocks(); ++b)
        file.read_block(b, decoder, scratch, batch);
      // Every byte of a shard lies inside a checksummed record, so no flip may go unnoticed.
      FAIL("a flipped byte at offset " << at << " was not detected");
    } catch (const CorruptRecordError&) {
      // expected
    }
  }
}
