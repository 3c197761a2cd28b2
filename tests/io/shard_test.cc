// drgrad shards: round trips for each codec and block size, byte layout (header, index, locator,
// TFRecord compatibility), schema checks and crash recovery by scanning.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <functional>
#include <numeric>

#include "io/shard/shard_block.h"
#include "io/shard/shard_file.h"
#include "io/shard/shard_format.h"
#include "io/shard/shard_writer.h"
#include "io/tfrecord/tfrecord_reader.h"
#include "io/util/errors.h"
#include "io/util/little_endian.h"
#include "tests/io/test_support.h"

using namespace drgrad::io;
using namespace drgrad::io::testing;

namespace {
Batch read_all_blocks(const ShardFile& file) {
  BlockDecoder decoder;
  std::vector<std::byte> scratch;
  Batch all = Batch::empty_for(file.schema());
  for (std::int64_t block = 0; block < file.num_blocks(); ++block) {
    Batch part;
    file.read_block(block, decoder, scratch, part);
    append_batch(all, part);
  }
  return all;
}
}  // namespace

TEST_CASE("shard round trip for every codec and block size", "[shard]") {
  TemporaryFolder folder;
  const Schema schema = make_schema(7, 5, 2);
  const Batch batch = make_batch(schema, 1000, 3);
  for (const auto codec : {shard::BlockCodec::none, shard::BlockCodec::zstd}) {
    for (const std::int64_t block_samples : {1, 7, 256, 1000, 5000}) {
      const std::string path = folder.file("data.drgrad");
      write_shard(path, schema, batch, {codec, 3, block_samples});
      const ShardFile file(path, {schema, false});
      CHECK(file.schema().fingerprint() == schema.fingerprint());
      CHECK(file.header().codec == codec);
      CHECK(file.total_samples() == 1000);
      CHECK(file.num_blocks() == (1000 + block_samples - 1) / block_samples);
      CHECK_FALSE(file.recovered_by_scan());
      const Batch back = read_all_blocks(file);
      CHECK(batches_equal(back, batch));
    }
  }
}

TEST_CASE("shard writer accepts batches of any size and splits them into full blocks", "[shard]") {
  TemporaryFolder folder;
  const Schema schema = make_schema(2, 3, 1);
  const Batch batch = make_batch(schema, 333, 9);
  ShardWriter writer(folder.file("pieces.drgrad"), schema, {shard::BlockCodec::zstd, 1, 50});
  std::int64_t start = 0;
  for (const std::int64_t piece : {1, 49, 0, 120, 13, 150}) {
    std::vector<std::int64_t> rows(static_cast<std::size_t>(piece));
    std::iota(rows.begin(), rows.end(), start);
    writer.write(gather_rows(batch, rows));
    start += piece;
  }
  REQUIRE(start == 333);
  writer.close();
  const ShardFile file(folder.file("pieces.drgrad"));
  REQUIRE(file.num_blocks() == 7);
  for (std::int64_t b = 0; b < 6; ++b) CHECK(file.blocks()[b].samples == 50u);
  CHECK(file.blocks()[6].samples == 33u);
  CHECK(batches_equal(read_all_blocks(file), batch));
}

TEST_CASE("shard with no samples and schemas with empty parts", "[shard]") {
  TemporaryFolder folder;
  for (const Schema& schema : {make_schema(0, 2, 1), make_schema(3, 0, 1), make_schema(1, 1, 0)}) {
    write_shard(folder.file("empty.drgrad"), schema, Batch::empty_for(schema));
    const ShardFile empty(folder.file("empty.drgrad"));
    CHECK(empty.num_blocks() == 0);
    CHECK(empty.total_samples() == 0);
    const Batch batch = make_batch(schema, 10, 1);
    write_shard(folder.file("small.drgrad"), schema, batch);
    CHECK(batches_equal(read_all_blocks(ShardFile(folder.file("small.drgrad"))), batch));
  }
}

TEST_CASE("shard is a valid TFRecord file with header, blocks, index and locator", "[shard]") {
  TemporaryFolder folder;
  const Schema schema = make_schema(3, 2, 2);
  const std::string path = folder.file("layout.drgrad");
  write_shard(path, schema, make_batch(schema, 100, 5), {shard::BlockCodec::zstd, 3, 40});
  TfRecordReader reader(path, {Compression::none, false, tfrecord::kDefaultMaxRecordBytes});
  std::vector<std::string> records;
  std::vector<std::uint64_t> offsets;
  std::span<const std::byte> record;
  while (true) {
    offsets.push_back(reader.byte_offset());
    if (!reader.next(record)) break;
    records.push_back(as_string(record));
  }
  REQUIRE(records.size() == 1 + 3 + 2);
  CHECK(records[0].substr(0, 8) == "DRGSHARD");
  CHECK(load_le<std::uint32_t>(records[0].data() + shard::kHeaderVersionOffset) ==
        shard::kFormatVersion);
  CHECK(load_le<std::uint64_t>(records[0].data() + shard::kHeaderFingerprintOffset) ==
        schema.fingerprint());
  CHECK(decode_shard_header(as_bytes(records[0])).schema.describe() == schema.describe());
  for (int block = 0; block < 3; ++block) {
    CHECK(BlockDecoder::sample_count(as_bytes(records[1 + block])) == (block < 2 ? 40u : 20u));
  }
  const std::string& index = records[4];
  CHECK(index.substr(0, 8) == "DRGINDEX");
  CHECK(load_le<std::uint64_t>(index.data() + 8) == 3u);
  CHECK(load_le<std::uint64_t>(index.data() + 16) == 100u);
  for (int block = 0; block < 3; ++block) {
    CHECK(load_le<std::uint64_t>(index.data() + 24 + 16 * block) == offsets[1 + block]);
  }
  const std::string& locator = records[5];
  REQUIRE(locator.size() == shard::kLocatorPayloadBytes);
  CHECK(load_le<std::uint64_t>(locator.data()) == offsets[4]);
  CHECK(locator.substr(8) == "DRGLOCAT");
  CHECK(read_whole_file(path).size() - offsets[5] == shard::kLocatorRecordBytes);
}

TEST_CASE("shard open rejects another schema with SchemaMismatchError", "[shard]") {
  TemporaryFolder folder;
  const Schema schema = make_schema(3, 2, 2);
  write_shard(folder.file("a.drgrad"), schema, make_batch(schema, 10, 1));
  Schema other = schema;
  other.sparse_slots[1].vocabulary_size = 77;
  try {
    ShardFile file(folder.file("a.drgrad"), {other, false});
    FAIL("no error");
  } catch (const SchemaMismatchError& error) {
    CHECK_THAT(error.what(), Catch::Contains("a.drgrad"));
    CHECK_THAT(error.what(), Catch::Contains("differs from the expected"));
  }
}

TEST_CASE("shard block decoder rejects a block whose shape disagrees with the schema", "[shard]") {
  const Schema schema = make_schema(3, 2, 1);
  const Batch batch = make_batch(schema, 20, 4);
  BlockEncoder encoder(shard::BlockCodec::zstd, 3);
  std::string payload;
  encoder.encode(batch, 0, batch.size, payload);
  BlockDecoder decoder;
  Batch out;
  decoder.decode(as_bytes(payload), schema, shard::BlockCodec::zstd, out);
  CHECK(batches_equal(out, batch));
  CHECK_THROWS_AS(
      decoder.decode(as_bytes(payload), make_schema(4, 2, 1), shard::BlockCodec::zstd, out),
      ShardPayloadError);
  CHECK_THROWS_AS(decoder.decode(as_bytes(payload), schema, shard::BlockCodec::none, out),
                  ShardPayloadError);
}

TEST_CASE("shard without index is recovered by scanning when skip_corrupt is set", "[shard]") {
  TemporaryFolder folder;
  const Schema schema = make_schema(2, 2, 1);
  const Batch batch = make_batch(schema, 100, 8);
  const std::string path = folder.file("cut.drgrad");
  write_shard(path, schema, batch, {shard::BlockCodec::zstd, 3, 30});
  const ShardFile intact(path);
  // Cut the file in the middle of the last block: blocks 0..2 (90 samples) survive.
  const std::string bytes = read_whole_file(path);
  write_whole_file(path, bytes.substr(0, intact.blocks()[3].byte_offset + 20));
  try {
    ShardFile file(path);
    FAIL("no error");
  } catch (const CorruptRecordError& error) {
    CHECK(error.truncated());
    CHECK_THAT(error.what(), Catch::Contains("writer probably crashed"));
  }
  const ShardFile recovered(path, {std::nullopt, true});
  CHECK(recovered.recovered_by_scan());
  CHECK(recovered.corrupt_records_skipped() == 1);
  REQUIRE(recovered.num_blocks() == 3);
  std::vector<std::int64_t> first(90);
  std::iota(first.begin(), first.end(), 0);
  CHECK(batches_equal(read_all_blocks(recovered), gather_rows(batch, first)));
}

TEST_CASE("shard description lists codec, counts and the whole schema", "[shard]") {
  TemporaryFolder folder;
  const Schema schema = make_schema(2, 2, 1);
  write_shard(folder.file("inspect.drgrad"), schema, make_batch(schema, 30, 2),
              {shard::BlockCodec::zstd, 5, 16});
  const std::string text = describe_shard(ShardFile(folder.file("inspect.drgrad")));
  CHECK_THAT(text, Catch::Contains("codec: zstd (level 5)"));
  CHECK_THAT(text, Catch::Contains("blocks: 2"));
  CHECK_THAT(text, Catch::Contains("samples: 30"));
  CHECK_THAT(text, Catch::Contains("dense: dense_1"));
  CHECK_THAT(text, Catch::Contains("sparse: slot_0 (vocabulary 1000)"));
  CHECK_THAT(text, Catch::Contains("label: label_0"));
}

TEST_CASE("shard files keep no descriptor open between reads", "[shard]") {
  TemporaryFolder folder;
  const Schema schema = make_schema(1, 1, 1);
  write_shard(folder.file("one.drgrad"), schema, make_batch(schema, 10, 1));
  auto open_descriptors = [] {
    std::size_t count = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator("/proc/self/fd")) {
      ++count;
    }
    return count;
  };
  const std::size_t before = open_descriptors();
  std::vector<ShardFile> files;
  for (int i = 0; i < 50; ++i) files.emplace_back(folder.file("one.drgrad"));
  BlockDecoder decoder;
  std::vector<std::byte> scratch;
  Batch batch;
  for (const auto& file : files) file.read_block(0, decoder, scratch, batch);
  CHECK(open_descriptors() == before);
  CHECK(batch.size == 10);
}

TEST_CASE("shard blocks store ids at the narrowest width and drop counts for one id per sample",
          "[shard]") {
  Schema schema = make_schema(1, 1, 1);
  BlockEncoder stored(shard::BlockCodec::none, 0);
  BlockDecoder decoder;
  const std::int64_t samples = 100;
  auto batch_with = [&](const std::function<std::vector<std::int64_t>(std::int64_t)>& ids_of) {
    Batch batch = Batch::empty_for(schema);
    batch.size = samples;
    for (std::int64_t i = 0; i < samples; ++i) {
      batch.dense.push_back(static_cast<float>(i));
      batch.labels.push_back(0.0f);
      for (const auto id : ids_of(i)) batch.sparse[0].ids.push_back(id);
      batch.sparse[0].offsets.push_back(static_cast<std::int64_t>(batch.sparse[0].ids.size()));
    }
    return batch;
  };
  // Stored body: 16 header + 4 n dense + 4 n labels + 12 slot header [+ 4 n counts] + w m ids.
  auto expected_body = [&](std::size_t width, bool counted, std::size_t ids) {
    return 16 + 8 * samples + 12 + (counted ? 4 * samples : 0) + width * ids;
  };
  struct Case {
    const char* what;
    std::function<std::vector<std::int64_t>(std::int64_t)> ids_of;
    std::size_t width;
    bool counted;
  };
  const std::vector<Case> cases = {
      {"one small id each", [](std::int64_t i) { return std::vector<std::int64_t>{i % 200}; }, 1,
       false},
      {"one 16-bit id each", [](std::int64_t i) { return std::vector<std::int64_t>{i * 600}; }, 2,
       false},
      {"one 32-bit id each", [](std::int64_t i) { return std::vector<std::int64_t>{i * 40000000}; },
       4, false},
      {"one 64-bit id each", [](std::int64_t i) { return std::vector<std::int64_t>{i << 40}; }, 8,
       false},
      {"negative ids", [](std::int64_t i) { return std::vector<std::int64_t>{-i}; }, 8, false},
      {"bags of two",
       [](std::int64_t i) {
         return std::vector<std::int64_t>{i, i + 1};
       },
       1, true},
      {"empty bags",
       [](std::int64_t i) {
         return i % 3 ? std::vector<std::int64_t>{} : std::vector<std::int64_t>{7};
       },
       1, true},
  };
  for (const auto& test : cases) {
    INFO(test.what);
    const Batch batch = batch_with(test.ids_of);
    std::string payload;
    stored.encode(batch, 0, samples, payload);
    CHECK(payload.size() - shard::kBlockHeaderBytes ==
          expected_body(test.width, test.counted, batch.sparse[0].ids.size()));
    Batch back;
    decoder.decode(as_bytes(payload), schema, shard::BlockCodec::none, back);
    CHECK(batches_equal(back, batch));
  }
}
