// TFRecord framing: byte-level layout, round trips for every compression, TensorFlow-written
// files, compression detection, seeking.
#include <catch2/catch.hpp>

#include "tests/support/shared_data.h"

#include <string>
#include <vector>

#include "io/tfrecord/tfrecord_format.h"
#include "io/tfrecord/tfrecord_reader.h"
#include "io/tfrecord/tfrecord_writer.h"
#include "io/util/crc32c.h"
#include "io/util/little_endian.h"
#include "tests/io/test_support.h"

using namespace drgrad::io;
using namespace drgrad::io::testing;

namespace {
std::vector<std::string> sample_payloads() {
  std::vector<std::string> payloads = {"", "a", "hello tfrecord", std::string(1, '\0')};
  std::string big(300000, 'x');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) % 251);
  payloads.push_back(big);
  for (int i = 0; i < 50; ++i) payloads.push_back("record number " + std::to_string(i));
  return payloads;
}

std::vector<std::string> read_all(const std::string& path, Compression compression) {
  TfRecordReaderOptions options;
  options.compression = compression;
  TfRecordReader reader(path, options);
  std::vector<std::string> records;
  std::span<const std::byte> record;
  while (reader.next(record)) records.push_back(as_string(record));
  return records;
}
}  // namespace

TEST_CASE("tfrecord framing lays out length, masked crcs and payload", "[tfrecord]") {
  std::string framed;
  tfrecord::append_record(framed, std::string_view("abc"));
  REQUIRE(framed.size() == 3 + tfrecord::kFramingBytes);
  const auto* bytes = reinterpret_cast<const unsigned char*>(framed.data());
  CHECK(load_le<std::uint64_t>(bytes) == 3u);
  CHECK(load_le<std::uint32_t>(bytes + 8) == mask_crc32c(crc32c(bytes, 8)));
  CHECK(framed.substr(12, 3) == "abc");
  CHECK(load_le<std::uint32_t>(bytes + 15) == mask_crc32c(crc32c("abc", 3)));
}

TEST_CASE("tfrecord writer output is byte-identical to hand framing", "[tfrecord]") {
  TemporaryFolder folder;
  const auto payloads = sample_payloads();
  TfRecordWriter writer(folder.file("plain.tfrecord"));
  std::string expected;
  for (const auto& payload : payloads) {
    writer.write(payload);
    tfrecord::append_record(expected, std::string_view(payload));
  }
  writer.close();
  CHECK(read_whole_file(folder.file("plain.tfrecord")) == expected);
}

TEST_CASE("tfrecord round trip for none, gzip and zlib", "[tfrecord]") {
  TemporaryFolder folder;
  const auto payloads = sample_payloads();
  for (Compression compression : {Compression::none, Compression::gzip, Compression::zlib}) {
    const std::string path = folder.file("data-" + to_string(compression) + ".tfrecord");
    TfRecordWriter writer(path, {compression, -1});
    for (const auto& payload : payloads) writer.write(payload);
    CHECK(writer.records_written() == static_cast<std::int64_t>(payloads.size()));
    writer.close();
    CHECK(read_all(path, compression) == payloads);
    CHECK(read_all(path, Compression::detect) == payloads);
    // The compressed file is the compressed form of the plain framing.
    std::string plain;
    for (const auto& payload : payloads) tfrecord::append_record(plain, std::string_view(payload));
    CHECK(decompress_bytes(read_whole_file(path), compression) == plain);
  }
}

TEST_CASE("tfrecord detection recognises each compression by its first bytes", "[tfrecord]") {
  std::string plain;
  tfrecord::append_record(plain, std::string_view("payload"));
  CHECK(detect_compression(as_bytes(plain)) == Compression::none);
  CHECK(detect_compression(as_bytes(compress_bytes(plain, Compression::gzip))) ==
        Compression::gzip);
  CHECK(detect_compression(as_bytes(compress_bytes(plain, Compression::zlib))) ==
        Compression::zlib);
}

TEST_CASE("tfrecord reads TensorFlow-written criteo files with their record counts",
          "[tfrecord][shared-data]") {
  DRGRAD_REQUIRE_SHARED_DATA();
  CHECK(count_tfrecords(shared_tfrecord("criteo_sample.tr.tfrecords")) == 160);
  CHECK(count_tfrecords(shared_tfrecord("criteo_sample.te.tfrecords")) == 40);
  const auto records = read_all(shared_tfrecord("criteo_sample.te.tfrecords"), Compression::none);
  REQUIRE(records.size() == 40);
  for (const auto& record : records) CHECK(!record.empty());
}

TEST_CASE("tfrecord reads Beam-written gzip penguin files with their record counts",
          "[tfrecord][shared-data]") {
  DRGRAD_REQUIRE_SHARED_DATA();
  Compression detected = Compression::none;
  auto source = open_file_source(shared_tfrecord("penguin-train.tfrecord.gz"), Compression::detect,
                                 &detected);
  CHECK(detected == Compression::gzip);
  CHECK(count_tfrecords(shared_tfrecord("penguin-train.tfrecord.gz")) == 234);
  CHECK(count_tfrecords(shared_tfrecord("penguin-eval.tfrecord.gz"), Compression::gzip) == 100);
}

TEST_CASE("tfrecord rewriting TensorFlow's records reproduces the file byte for byte",
          "[tfrecord][shared-data]") {
  DRGRAD_REQUIRE_SHARED_DATA();
  TemporaryFolder folder;
  const std::string original = shared_tfrecord("criteo_sample.te.tfrecords");
  TfRecordWriter writer(folder.file("copy.tfrecord"));
  for (const auto& record : read_all(original, Compression::none)) writer.write(record);
  writer.close();
  CHECK(read_whole_file(folder.file("copy.tfrecord")) == read_whole_file(original));
}

TEST_CASE("tfrecord reader seeks to a record offset in uncompressed files", "[tfrecord]") {
  DRGRAD_REQUIRE_SHARED_DATA();
  TemporaryFolder folder;
  const auto payloads = sample_payloads();
  const std::string path = folder.file("seek.tfrecord");
  TfRecordWriter writer(path);
  for (const auto& payload : payloads) writer.write(payload);
  writer.close();

  TfRecordReader scanner(path);
  std::vector<std::uint64_t> offsets;
  do {
    offsets.push_back(scanner.byte_offset());
  } while (scanner.skip());
  REQUIRE(offsets.size() == payloads.size() + 1);

  TfRecordReader reader(path);
  for (std::size_t index : {7u, 2u, 30u, 4u}) {
    REQUIRE(reader.seek(offsets[index], static_cast<std::int64_t>(index)));
    std::span<const std::byte> record;
    REQUIRE(reader.next(record));
    CHECK(as_string(record) == payloads[index]);
    CHECK(reader.record_index() == static_cast<std::int64_t>(index + 1));
  }
  TfRecordReader gzip_reader(shared_tfrecord("penguin-eval.tfrecord.gz"));
  CHECK_FALSE(gzip_reader.seek(0, 0));
}

TEST_CASE("tfrecord empty file holds zero records", "[tfrecord]") {
  TemporaryFolder folder;
  write_whole_file(folder.file("empty.tfrecord"), "");
  CHECK(read_all(folder.file("empty.tfrecord"), Compression::detect).empty());
}
