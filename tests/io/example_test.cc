// tf.train.Example: wire-format decoding (packed, unpacked, empty, unknown fields, damage),
// encoding, the TensorFlow-written files of shared/data, and the mapping onto io::Batch.
#include <catch2/catch.hpp>

#include "tests/support/shared_data.h"

#include <cmath>
#include <string>
#include <vector>

#include "io/example/example.h"
#include "io/example/example_batch_decoder.h"
#include "io/tfrecord/tfrecord_reader.h"
#include "tests/io/test_support.h"

using namespace drgrad::io;
using namespace drgrad::io::testing;

namespace {
std::string bytes_of(std::initializer_list<int> values) {
  std::string out;
  for (const int value : values) out.push_back(static_cast<char>(value));
  return out;
}

// Appends pieces one by one (operator+ chains trip a GCC 12 -Wrestrict false positive).
std::string concat(std::initializer_list<std::string> pieces) {
  std::string out;
  for (const auto& piece : pieces) out.append(piece);
  return out;
}

ExampleMapping mapping_of(const Schema& schema) {
  ExampleMapping mapping;
  mapping.schema = schema;
  return mapping;
}

std::vector<std::string> read_records(const std::string& path) {
  TfRecordReader reader(path);
  std::vector<std::string> records;
  std::span<const std::byte> record;
  while (reader.next(record)) records.push_back(as_string(record));
  return records;
}

Schema criteo_schema() {
  Schema schema;
  for (int i = 1; i <= 13; ++i) schema.dense_features.push_back(numbered("I", i));
  for (int i = 1; i <= 26; ++i) schema.sparse_slots.push_back({numbered("C", i), 0});
  schema.labels = {"label"};
  return schema;
}
}  // namespace

TEST_CASE("example encoder writes TensorFlow's byte layout", "[example]") {
  Example example;
  example["a"] = Feature::of_int64s({1});
  // Example{features{feature{key:"a" value{int64_list{value:1}}}}}, as protobuf serialises it.
  CHECK(encode_example(example) == bytes_of({0x0a, 0x0c, 0x0a, 0x0a, 0x0a, 0x01, 'a', 0x12, 0x05,
                                             0x1a, 0x03, 0x0a, 0x01, 0x01}));
}

TEST_CASE("example round trip keeps every kind, empty lists and negative ids", "[example]") {
  Example example;
  example["dense"] = Feature::of_floats({1.5f, -2.25f, 0.0f});
  example["ids"] = Feature::of_int64s({0, 1, -1, 300, INT64_MAX, INT64_MIN});
  example["words"] = Feature::of_bytes({"alpha", "", std::string("\0b", 2)});
  example["empty_floats"] = Feature::of_floats({});
  example["empty_ids"] = Feature::of_int64s({});
  example["empty_bytes"] = Feature::of_bytes({});
  example["no_kind"] = Feature{};
  example[""] = Feature::of_floats({3.0f});
  const std::string encoded = encode_example(example);
  CHECK(decode_example(as_bytes(encoded)) == example);
  CHECK(decode_example(as_bytes(encode_example(Example{}))).empty());
  CHECK(decode_example(as_bytes(std::string())).empty());
}

TEST_CASE("example decoder accepts unpacked lists", "[example]") {
  // float_list with two unpacked fixed32 values; int64_list with two unpacked varints (1, 150).
  const std::string floats =
      bytes_of({0x0d, 0x00, 0x00, 0x80, 0x3f, 0x0d, 0x00, 0x00, 0x00, 0x40});  // 1.0f, 2.0f
  const std::string ints = bytes_of({0x08, 0x01, 0x08, 0x96, 0x01});
  auto feature = [](int field, const std::string& list) {
    return concat({bytes_of({field << 3 | 2, static_cast<int>(list.size())}), list});
  };
  auto entry = [](const std::string& key, const std::string& value) {
    const std::string body = concat({bytes_of({0x0a, static_cast<int>(key.size())}), key,
                                     bytes_of({0x12, static_cast<int>(value.size())}), value});
    return concat({bytes_of({0x0a, static_cast<int>(body.size())}), body});
  };
  const std::string features =
      concat({entry("f", feature(2, floats)), entry("i", feature(3, ints))});
  const std::string record =
      concat({bytes_of({0x0a, static_cast<int>(features.size())}), features});
  const Example example = decode_example(as_bytes(record));
  REQUIRE(example.size() == 2);
  CHECK(example.at("f").float_values == std::vector<float>{1.0f, 2.0f});
  CHECK(example.at("i").int64_values == std::vector<std::int64_t>{1, 150});
}

TEST_CASE("example decoder skips unknown fields at every level", "[example]") {
  Example example;
  example["x"] = Feature::of_int64s({5, 6});
  const std::string plain = encode_example(example);
  // Unknown varint field 9 (0x48 0x07), fixed64 field 10 and fixed32 field 11 before the features,
  // and an unknown length-delimited field 7 after.
  const std::string record =
      concat({bytes_of({0x48, 0x07, 0x51, 1, 2, 3, 4, 5, 6, 7, 8, 0x5d, 1, 2, 3, 4}), plain,
              bytes_of({0x3a, 0x02, 'h', 'i'})});
  CHECK(decode_example(as_bytes(record)) == example);

  // An unknown field inside the Features map entry and inside the Feature itself.
  const std::string list = bytes_of({0x0a, 0x02, 0x05, 0x06});                   // packed 5, 6
  const std::string value = concat({bytes_of({0x20, 0x01, 0x1a, 0x04}), list});  // field 4 unknown
  const std::string body = concat(
      {bytes_of({0x18, 0x02, 0x0a, 0x01, 'x', 0x12, static_cast<int>(value.size())}), value});
  const std::string features = concat({bytes_of({0x0a, static_cast<int>(body.size())}), body});
  const std::string nested =
      concat({bytes_of({0x0a, static_cast<int>(features.size())}), features});
  CHECK(decode_example(as_bytes(nested)) == example);
}

TEST_CASE("example decoder reports malformed bytes without crashing", "[example]") {
  Example example;
  example["name"] = Feature::of_floats({1.0f, 2.0f});
  const std::string good = encode_example(example);
  for (std::size_t cut = 1; cut < good.size(); ++cut) {
    CHECK_THROWS_AS(decode_example(as_bytes(good.substr(0, cut))), ExampleParseError);
  }
  CHECK_THROWS_AS(decode_example(as_bytes(bytes_of({0x0a, 0x80}))), ExampleParseError);
  CHECK_THROWS_AS(decode_example(as_bytes(bytes_of({0x0b}))), ExampleParseError);  // group
  CHECK_THROWS_AS(decode_example(as_bytes(bytes_of({0x00}))), ExampleParseError);  // field 0
  CHECK_THROWS_AS(decode_example(as_bytes(bytes_of(
                      {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}))),
                  ExampleParseError);
}

TEST_CASE("example decodes every criteo record written by TensorFlow", "[example][shared-data]") {
  DRGRAD_REQUIRE_SHARED_DATA();
  for (const auto& [file, count] : std::vector<std::pair<std::string, std::size_t>>{
           {"criteo_sample.tr.tfrecords", 160}, {"criteo_sample.te.tfrecords", 40}}) {
    const auto records = read_records(shared_tfrecord(file));
    REQUIRE(records.size() == count);
    for (const auto& record : records) {
      const Example example = decode_example(as_bytes(record));
      REQUIRE(example.size() == 26 + 13 + 1);
      for (int i = 1; i <= 26; ++i) {
        const Feature& feature = example.at(numbered("C", i));
        CHECK(feature.kind == FeatureKind::int64_list);
        CHECK(feature.int64_values.size() == 1);
        CHECK(feature.int64_values[0] >= 0);
      }
      for (int i = 1; i <= 13; ++i) {
        const Feature& feature = example.at(numbered("I", i));
        CHECK(feature.kind == FeatureKind::float_list);
        CHECK(feature.float_values.size() == 1);
      }
      const Feature& label = example.at("label");
      REQUIRE(label.float_values.size() == 1);
      CHECK((label.float_values[0] == 0.0f || label.float_values[0] == 1.0f));
      // TensorFlow writes map entries in hash order, we write them in name order: compare values.
      CHECK(decode_example(as_bytes(encode_example(example))) == example);
    }
  }
}

TEST_CASE("example decodes the gzip penguin records written by Beam", "[example][shared-data]") {
  DRGRAD_REQUIRE_SHARED_DATA();
  for (const auto& [file, count] : std::vector<std::pair<std::string, std::size_t>>{
           {"penguin-train.tfrecord.gz", 234}, {"penguin-eval.tfrecord.gz", 100}}) {
    const auto records = read_records(shared_tfrecord(file));
    REQUIRE(records.size() == count);
    for (const auto& record : records) {
      const Example example = decode_example(as_bytes(record));
      REQUIRE(example.size() == 5);
      for (const char* name :
           {"body_mass_g", "culmen_depth_mm", "culmen_length_mm", "flipper_length_mm"}) {
        REQUIRE(example.at(name).float_values.size() == 1);
      }
      REQUIRE(example.at("species").int64_values.size() == 1);
      const auto species = example.at("species").int64_values[0];
      CHECK((species >= 0 && species <= 2));
    }
  }
}

TEST_CASE("example batch decoder maps criteo features onto a batch", "[example][shared-data]") {
  DRGRAD_REQUIRE_SHARED_DATA();
  ExampleBatchDecoder decoder(mapping_of(criteo_schema()));
  const auto records = read_records(shared_tfrecord("criteo_sample.te.tfrecords"));
  Batch batch = Batch::empty_for(decoder.schema());
  for (const auto& record : records) decoder.append(as_bytes(record), batch);
  REQUIRE(batch.size == 40);
  REQUIRE_NOTHROW(batch.validate(decoder.schema()));
  for (std::size_t row = 0; row < records.size(); ++row) {
    const Example example = decode_example(as_bytes(records[row]));
    for (int i = 0; i < 13; ++i) {
      CHECK(batch.dense[row * 13 + i] == example.at(numbered("I", i + 1)).float_values[0]);
    }
    for (int slot = 0; slot < 26; ++slot) {
      const auto& column = batch.sparse[slot];
      REQUIRE(column.offsets[row + 1] - column.offsets[row] == 1);
      CHECK(column.ids[column.offsets[row]] == example.at(numbered("C", slot + 1)).int64_values[0]);
    }
    CHECK(batch.labels[row] == example.at("label").float_values[0]);
  }
}

TEST_CASE("example batch decoder hashes bytes, folds ids and fills defaults", "[example]") {
  Schema schema;
  schema.dense_features = {"price", "absent_dense"};
  schema.sparse_slots = {{"tags", 1000}, {"item", 10}, {"missing_slot", 0}};
  schema.labels = {"click", "buy"};
  ExampleMapping mapping = mapping_of(schema);
  mapping.missing_dense_value = -1.0f;
  ExampleBatchDecoder decoder(mapping);

  Example example;
  example["price"] = Feature::of_floats({2.5f});
  example["tags"] = Feature::of_bytes({"red", "blue"});
  example["item"] = Feature::of_int64s({23, -3});
  example["click"] = Feature::of_int64s({1});
  example["buy"] = Feature::of_floats({0.0f});
  example["unused"] = Feature::of_bytes({"ignored"});
  Batch batch = Batch::empty_for(schema);
  decoder.append(as_bytes(encode_example(example)), batch);
  REQUIRE(batch.size == 1);
  CHECK(batch.dense == std::vector<float>{2.5f, -1.0f});
  CHECK(batch.labels == std::vector<float>{1.0f, 0.0f});
  CHECK(batch.sparse[0].ids == std::vector<std::int64_t>{hash_feature_bytes("red") % 1000,
                                                         hash_feature_bytes("blue") % 1000});
  CHECK(batch.sparse[1].ids == std::vector<std::int64_t>{3, 7});
  CHECK(batch.sparse[2].ids.empty());
  CHECK(batch.sparse[2].offsets == std::vector<std::int64_t>{0, 0});
  CHECK(hash_feature_bytes("red") != hash_feature_bytes("blue"));
  CHECK(hash_feature_bytes("red") >= 0);
}

TEST_CASE("example batch decoder rejects mismatches and leaves the batch unchanged", "[example]") {
  Schema schema;
  schema.dense_features = {"x"};
  schema.sparse_slots = {{"ids", 0}};
  schema.labels = {"y"};
  ExampleBatchDecoder decoder(mapping_of(schema));
  Batch batch = Batch::empty_for(schema);
  Example good;
  good["x"] = Feature::of_floats({1.0f});
  good["ids"] = Feature::of_int64s({4, 5});
  good["y"] = Feature::of_floats({1.0f});
  decoder.append(as_bytes(encode_example(good)), batch);
  const Batch before = batch;

  auto expect_mapping_error = [&](Example example, const std::string& fragment) {
    try {
      decoder.append(as_bytes(encode_example(example)), batch);
      FAIL("no error for: " << fragment);
    } catch (const ExampleMappingError& error) {
      CHECK_THAT(error.what(), Catch::Contains(fragment));
    }
    CHECK(batch.size == before.size);
    CHECK(batch.dense == before.dense);
    CHECK(batch.labels == before.labels);
    CHECK(batch.sparse[0].ids == before.sparse[0].ids);
    CHECK(batch.sparse[0].offsets == before.sparse[0].offsets);
  };
  Example no_label = good;
  no_label.erase("y");
  expect_mapping_error(no_label, "no label feature 'y'");
  Example two_values = good;
  two_values["x"] = Feature::of_floats({1.0f, 2.0f});
  expect_mapping_error(two_values, "has 2 values");
  Example wrong_kind = good;
  wrong_kind["ids"] = Feature::of_floats({1.0f});
  expect_mapping_error(wrong_kind, "float_list");
  Example negative = good;
  negative["ids"] = Feature::of_int64s({-4});
  expect_mapping_error(negative, "negative id");

  CHECK_THROWS_AS(decoder.append(as_bytes(std::string("\x0a\x05", 2)), batch), ExampleParseError);
  CHECK(batch.size == before.size);
  CHECK(batch.sparse[0].ids == before.sparse[0].ids);
}

TEST_CASE("example decoder accepts empty packed lists", "[example]") {
  // FloatList{value: packed, zero bytes} and Int64List likewise (found by the fuzzer).
  std::vector<float> floats;
  append_float_values(as_bytes(bytes_of({0x0a, 0x00})), floats);
  CHECK(floats.empty());
  std::vector<std::int64_t> ints;
  append_int64_values(as_bytes(bytes_of({0x0a, 0x00})), ints);
  CHECK(ints.empty());
}

TEST_CASE("example batch decoder follows features whatever their order", "[example]") {
  // The decoder predicts each record's feature order from the previous one; records whose order
  // differs, or that hold extra features, must still land in the right columns.
  Schema schema;
  schema.dense_features = {"a", "b"};
  schema.labels = {"y"};
  ExampleBatchDecoder decoder(mapping_of(schema));
  auto single = [](const std::string& name, float value) {
    Example example;
    example[name] = Feature::of_floats({value});
    return encode_example(example);  // one Features message; concatenations merge in order
  };
  const std::vector<std::string> records = {
      concat({single("a", 1), single("b", 2), single("y", 3)}),
      concat({single("y", 6), single("b", 5), single("a", 4)}),
      concat({single("a", 7), single("unused", 0), single("b", 8), single("y", 9)}),
      concat({single("unused", 0), single("y", 12), single("a", 10), single("b", 11)}),
      concat({single("a", 13), single("b", 14), single("y", 15)}),
  };
  Batch batch = Batch::empty_for(schema);
  for (const auto& record : records) decoder.append(as_bytes(record), batch);
  CHECK(batch.dense == std::vector<float>{1, 2, 4, 5, 7, 8, 10, 11, 13, 14});
  CHECK(batch.labels == std::vector<float>{3, 6, 9, 12, 15});
  // A copy decodes on its own.
  ExampleBatchDecoder copy = decoder;
  Batch again = Batch::empty_for(schema);
  copy.append(as_bytes(records[1]), again);
  CHECK(again.dense == std::vector<float>{4, 5});
}
