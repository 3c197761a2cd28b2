// Interoperability with TensorFlow's own writers for all three TFRecordOptions compressions
// (fixtures in tests/io/data, made by make_tensorflow_files.py), including the ZLIB form that
// shared/data lacks. Files written by drgrad were checked the other way with TensorFlow itself.
#include <catch2/catch.hpp>

#include "io/example/example.h"
#include "io/tfrecord/tfrecord_reader.h"
#include "io/tfrecord/tfrecord_writer.h"
#include "tests/io/test_support.h"

using namespace drgrad::io;
using namespace drgrad::io::testing;

namespace {
std::string fixture(const std::string& name) {
  return std::string(DRGRAD_SOURCE_DIR) + "/tests/io/data/" + name;
}

void check_fixture_records(TfRecordReader& reader) {
  std::span<const std::byte> record;
  std::int64_t index = 0;
  while (reader.next(record)) {
    const Example example = decode_example(record);
    REQUIRE(example.size() == 4);
    CHECK(example.at("id").int64_values == std::vector<std::int64_t>{index, -index});
    CHECK(example.at("x").float_values == std::vector<float>{0.5f * static_cast<float>(index)});
    CHECK(example.at("s").bytes_values == std::vector<std::string>{numbered("v", index)});
    CHECK(example.at("e").kind == FeatureKind::float_list);
    CHECK(example.at("e").float_values.empty());
    ++index;
  }
  CHECK(index == 100);
}
}  // namespace

TEST_CASE("tfrecord interop reads TensorFlow files of every compression", "[tfrecord]") {
  for (const auto& [name, compression] : std::vector<std::pair<std::string, Compression>>{
           {"none", Compression::none}, {"gzip", Compression::gzip}, {"zlib", Compression::zlib}}) {
    INFO("compression " << name);
    const std::string path = fixture("tensorflow_written_" + name + ".tfrecord");
    TfRecordReader detected(path);
    CHECK(detected.compression() == compression);
    check_fixture_records(detected);
    TfRecordReaderOptions options;
    options.compression = compression;
    TfRecordReader told(path, options);
    check_fixture_records(told);
  }
}

TEST_CASE("tfrecord interop rewrites TensorFlow's records into identical framing", "[tfrecord]") {
  // The uncompressed stream inside each TensorFlow file equals our framing of the same payloads.
  for (const std::string name : {"none", "gzip", "zlib"}) {
    const std::string path = fixture("tensorflow_written_" + name + ".tfrecord");
    TfRecordReader reader(path);
    std::string framed;
    std::span<const std::byte> record;
    while (reader.next(record)) tfrecord::append_record(framed, record);
    CHECK(decompress_bytes(read_whole_file(path), reader.compression()) == framed);
  }
}
