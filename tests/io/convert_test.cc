// Converters: CSV (spec file, vocabularies, hashing, normalisation, label rules, split) and
// TFRecord/Example to shards, checked by reading the shards back.
#include <catch2/catch.hpp>

#include "tests/support/shared_data.h"

#include <cmath>
#include <sstream>

#include "io/convert/csv_to_shards.h"
#include "io/reader/dataset_reader.h"
#include "io/shard/shard_file.h"
#include "io/tfrecord/tfrecord_reader.h"
#include "tests/io/test_support.h"

using namespace drgrad::io;
using namespace drgrad::io::testing;

namespace {
CsvColumn column_of(std::size_t field, const std::string& name, ColumnRole role,
                    std::int64_t hash_buckets = 0, std::int64_t min_count = 1,
                    DenseNormalization normalization = DenseNormalization::none) {
  CsvColumn column;
  column.field = field;
  column.name = name;
  column.role = role;
  column.hash_buckets = hash_buckets;
  column.min_count = min_count;
  column.normalization = normalization;
  return column;
}

Batch read_shards(const std::vector<std::string>& files) {
  DatasetReaderOptions options;
  options.files = files;
  options.shuffle = false;
  options.batch_size = 1 << 20;
  DatasetReader reader(options);
  Batch all = Batch::empty_for(reader.schema());
  Batch batch;
  while (reader.next(batch)) append_batch(all, batch);
  return all;
}

std::vector<std::vector<std::string>> census_rows(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> fields;
    std::stringstream stream(line);
    std::string field;
    while (std::getline(stream, field, ',')) {
      const auto first = field.find_first_not_of(' ');
      fields.push_back(first == std::string::npos ? "" : field.substr(first));
    }
    rows.push_back(fields);
  }
  return rows;
}
}  // namespace

TEST_CASE("convert census sample with the census schema file", "[convert][shared-data]") {
  DRGRAD_REQUIRE_SHARED_DATA();
  TemporaryFolder folder;
  const CsvConversionSpec spec =
      load_csv_spec(std::string(DRGRAD_SOURCE_DIR) + "/configs/census_schema.toml");
  CsvConversionOptions options;
  const std::string input =
      std::string(DRGRAD_SHARED_DATA_DIR) + "/census/census-income.train-sample";
  options.inputs = {input};
  options.output_folder = folder.path().string();
  options.samples_per_shard = 50;
  const CsvConversionReport report = convert_csv_to_shards(spec, options);
  CHECK(report.schema.num_sparse() == 32);
  CHECK(report.schema.num_dense() == 7);
  CHECK(report.schema.labels == std::vector<std::string>{"marital_stat", "income"});
  CHECK(report.train_samples == 140);  // i % 10 < 7 of 200 lines
  CHECK(report.eval_samples == 60);
  CHECK(report.train_files.size() == 3);  // 50 + 50 + 40
  CHECK(report.eval_files.size() == 2);
  CHECK(ShardFile(report.train_files[0]).total_samples() == 50);

  const auto rows = census_rows(input);
  REQUIRE(rows.size() == 200);
  const Batch train = read_shards(report.train_files);
  const Batch eval = read_shards(report.eval_files);
  REQUIRE(train.size == 140);
  REQUIRE(eval.size == 60);
  std::size_t sex_slot = 0;
  while (report.schema.sparse_slots[sex_slot].name != "sex") ++sex_slot;
  CHECK(sex_slot == 9);  // fields 1, 2, 3, 4, 6, 8, 9, 10, 11 come first
  std::int64_t train_row = 0, eval_row = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const bool is_train = i % 10 < 7;
    const Batch& batch = is_train ? train : eval;
    const std::int64_t row = is_train ? train_row++ : eval_row++;
    CHECK(batch.labels[row * 2 + 0] == (rows[i][7] == "Never married" ? 1.0f : 0.0f));
    CHECK(batch.labels[row * 2 + 1] == (rows[i][41] == "50000+." ? 1.0f : 0.0f));
    // The sex slot (field 12) holds the vocabulary id of the cell.
    const auto& vocabulary = report.vocabularies.at("sex");
    const std::int64_t expected_id = vocabulary.count(rows[i][12]) ? vocabulary.at(rows[i][12]) : 0;
    CHECK(batch.sparse[sex_slot].ids[row] == expected_id);
    // weeks worked (dense 6) is standardised with training statistics.
    const auto& weeks = report.dense_statistics.at("weeks_worked_in_year");
    CHECK(batch.dense[row * 7 + 6] ==
          Approx((std::stod(rows[i][39]) - weeks.mean) / weeks.standard_deviation).margin(1e-5));
    // capital gains (dense 2) is log1p.
    CHECK(batch.dense[row * 7 + 2] == Approx(std::log1p(std::stod(rows[i][16]))).margin(1e-5));
  }
  // Standardised over the training rows: mean 0.
  double sum = 0;
  for (std::int64_t row = 0; row < train.size; ++row) sum += train.dense[row * 7 + 6];
  CHECK(sum / static_cast<double>(train.size) == Approx(0.0).margin(1e-4));
  for (const auto& slot : report.schema.sparse_slots) CHECK(slot.vocabulary_size >= 2);
}

TEST_CASE("convert csv with header, quotes, hashing, min_count and numeric labels", "[convert]") {
  TemporaryFolder folder;
  write_whole_file(folder.file("data.csv"),
                   "id,color,score,target,comment\n"
                   "1, red ,2.5,1,\"hello, world\"\n"
                   "2,blue,3.5,0,plain\n"
                   "3,red,-1,1,\"say \"\"hi\"\"\"\n"
                   "4,green,0,0,x\n");
  CsvConversionSpec spec;
  spec.has_header = true;
  spec.columns = {column_of(1, "color", ColumnRole::categorical, 0, 2),
                  column_of(4, "comment", ColumnRole::categorical, 64),
                  column_of(2, "score", ColumnRole::dense, 0, 1, DenseNormalization::min_max),
                  column_of(3, "target", ColumnRole::label),
                  column_of(0, "id", ColumnRole::ignore)};
  CsvConversionOptions options;
  options.inputs = {folder.file("data.csv")};
  options.output_folder = folder.path().string();
  const auto report = convert_csv_to_shards(spec, options);
  REQUIRE(report.train_samples == 4);
  CHECK(report.eval_samples == 0);
  CHECK(report.vocabularies.at("color") == std::map<std::string, std::int64_t>{{"red", 1}});
  CHECK(report.schema.sparse_slots[0].vocabulary_size == 2);
  CHECK(report.schema.sparse_slots[1].vocabulary_size == 64);
  const Batch batch = read_shards(report.train_files);
  CHECK(batch.sparse[0].ids == std::vector<std::int64_t>{1, 0, 1, 0});
  CHECK(batch.sparse[1].ids[0] == hash_feature_bytes("hello, world") % 64);
  CHECK(batch.sparse[1].ids[2] == hash_feature_bytes("say \"hi\"") % 64);
  // min_max over the training rows: min -1, max 3.5.
  CHECK(batch.dense == std::vector<float>{3.5f / 4.5f, 1.0f, 0.0f, 1.0f / 4.5f});
  CHECK(batch.labels == std::vector<float>{1, 0, 1, 0});
}

TEST_CASE("convert csv reports malformed rows with file and line", "[convert]") {
  TemporaryFolder folder;
  write_whole_file(folder.file("bad.csv"), "1,a\n2,b\nthree,c\n");
  CsvConversionSpec spec;
  spec.columns = {column_of(0, "x", ColumnRole::dense), column_of(1, "c", ColumnRole::categorical)};
  CsvConversionOptions options;
  options.inputs = {folder.file("bad.csv")};
  options.output_folder = folder.path().string();
  try {
    convert_csv_to_shards(spec, options);
    FAIL("no error");
  } catch (const std::runtime_error& error) {
    CHECK_THAT(error.what(), Catch::Contains("bad.csv' line 3"));
    CHECK_THAT(error.what(), Catch::Contains("'three'"));
  }
  spec.columns.push_back(column_of(5, "missing", ColumnRole::dense));
  CHECK_THROWS_WITH(convert_csv_to_shards(spec, options), Catch::Contains("line 1"));
  CHECK_THROWS_AS(LabelRule::parse("other == \"x\"", "income"), std::invalid_argument);
  CHECK_THROWS_AS(LabelRule::parse("income == x", "income"), std::invalid_argument);
  CHECK(LabelRule::parse("income != \" 50000+.\"", "income").value == "50000+.");
}

TEST_CASE("convert tfrecord examples to shards keeps every record in order",
          "[convert][shared-data]") {
  DRGRAD_REQUIRE_SHARED_DATA();
  TemporaryFolder folder;
  ExampleMapping mapping;
  mapping.schema.dense_features = {"body_mass_g", "culmen_depth_mm", "culmen_length_mm",
                                   "flipper_length_mm"};
  mapping.schema.labels = {"species"};
  const std::vector<std::string> inputs = {shared_tfrecord("penguin-train.tfrecord.gz"),
                                           shared_tfrecord("penguin-eval.tfrecord.gz")};
  const auto files =
      convert_tfrecord_to_shards(inputs, mapping, folder.path().string(), "penguin", 100);
  REQUIRE(files.size() == 4);  // 334 samples in shards of 100
  const Batch shards = read_shards(files);
  REQUIRE(shards.size == 334);
  ExampleBatchDecoder decoder(mapping);
  Batch direct = Batch::empty_for(mapping.schema);
  for (const auto& input : inputs) {
    TfRecordReader reader(input);
    std::span<const std::byte> record;
    while (reader.next(record)) decoder.append(record, direct);
  }
  CHECK(batches_equal(shards, direct));
}

TEST_CASE("convert the full census file into the documented train/eval split",
          "[convert][shared-data]") {
  DRGRAD_REQUIRE_SHARED_DATA();
  TemporaryFolder folder;
  const CsvConversionSpec spec =
      load_csv_spec(std::string(DRGRAD_SOURCE_DIR) + "/configs/census_schema.toml");
  CsvConversionOptions options;
  options.inputs = {std::string(DRGRAD_SHARED_DATA_DIR) + "/census/census-income.test.gz"};
  options.output_folder = folder.path().string();
  const CsvConversionReport report = convert_csv_to_shards(spec, options);
  // shared/data/README.md: line i goes to training when i % 10 < 7 (69,834 / 29,928 rows).
  CHECK(report.train_samples == 69834);
  CHECK(report.eval_samples == 29928);
  REQUIRE(report.train_files.size() == 1);
  const ShardFile train(report.train_files[0]);
  CHECK(train.total_samples() == 69834);
  CHECK(train.schema().fingerprint() == report.schema.fingerprint());
  // Every categorical column of the file has at least two distinct values.
  for (const auto& slot : report.schema.sparse_slots) CHECK(slot.vocabulary_size >= 3);
  // About 6 % earn more than 50000 (census-income.names: 93.8 % below).
  const Batch eval = read_shards(report.eval_files);
  double income = 0;
  for (std::int64_t row = 0; row < eval.size; ++row) income += eval.labels[row * 2 + 1];
  CHECK(income / static_cast<double>(eval.size) == Approx(0.062).margin(0.01));
}
