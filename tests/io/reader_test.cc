// DatasetReader: coverage per epoch, rank splits, determinism independent of threads, epochs,
// save/restore of the position, TFRecord input, and skipping damaged blocks.
#include <catch2/catch.hpp>

#include "tests/support/shared_data.h"

#include <algorithm>
#include <map>
#include <set>

#include "io/example/example.h"
#include "io/reader/dataset_reader.h"
#include "io/shard/shard_file.h"
#include "io/shard/shard_writer.h"
#include "io/tfrecord/tfrecord_reader.h"
#include "io/tfrecord/tfrecord_writer.h"
#include "io/util/errors.h"
#include "tests/io/test_support.h"

using namespace drgrad::io;
using namespace drgrad::io::testing;

namespace {

// Three shards of 300, 250 and 97 samples (ids 0..646 in label 0), blocks of 32 samples.
struct ShardSet {
  TemporaryFolder folder;
  Schema schema = make_schema(3, 2, 2);
  std::vector<std::string> files;
  Batch all = Batch::empty_for(schema);
  ShardSet() {
    std::int64_t first_id = 0;
    std::uint32_t seed = 1;
    for (const std::int64_t samples : {300, 250, 97}) {
      const Batch batch = make_batch(schema, samples, seed++, first_id);
      files.push_back(folder.file("part-" + std::to_string(files.size()) + ".drgrad"));
      write_shard(files.back(), schema, batch, {shard::BlockCodec::zstd, 1, 32});
      append_batch(all, batch);
      first_id += samples;
    }
  }
  std::int64_t total() const { return all.size; }
};

DatasetReaderOptions options_for(const ShardSet& set) {
  DatasetReaderOptions options;
  options.files = set.files;
  options.batch_size = 50;
  options.seed = 42;
  options.shuffle_window_units = 4;
  return options;
}

std::vector<Batch> read_batches(DatasetReader& reader, std::size_t limit = SIZE_MAX) {
  std::vector<Batch> batches;
  Batch batch;
  while (batches.size() < limit && reader.next(batch)) batches.push_back(batch);
  return batches;
}

std::vector<std::int64_t> sample_ids(const std::vector<Batch>& batches, std::size_t num_labels) {
  std::vector<std::int64_t> ids;
  for (const auto& batch : batches) {
    for (std::int64_t i = 0; i < batch.size; ++i) {
      ids.push_back(static_cast<std::int64_t>(batch.labels[i * num_labels]));
    }
  }
  return ids;
}

bool same_batches(const std::vector<Batch>& a, const std::vector<Batch>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!batches_equal(a[i], b[i])) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("reader without shuffle returns every sample in file order", "[reader]") {
  ShardSet set;
  auto options = options_for(set);
  options.shuffle = false;
  DatasetReader reader(options);
  CHECK(reader.samples_per_epoch() == set.total());
  const auto batches = read_batches(reader);
  Batch joined = Batch::empty_for(set.schema);
  for (const auto& batch : batches) {
    REQUIRE_NOTHROW(batch.validate(set.schema));
    append_batch(joined, batch);
  }
  CHECK(batches_equal(joined, set.all));
  CHECK(batches.size() == 13);  // 647 samples in batches of 50
  CHECK(batches.back().size == 47);
}

TEST_CASE("reader with shuffle returns every sample exactly once per epoch", "[reader]") {
  ShardSet set;
  auto options = options_for(set);
  options.num_epochs = 3;
  DatasetReader reader(options);
  std::vector<std::vector<std::int64_t>> epochs(3);
  Batch batch;
  while (reader.next(batch)) {
    const std::int64_t epoch = reader.epoch();  // batches never span epochs
    REQUIRE(epoch < 3);
    for (std::int64_t i = 0; i < batch.size; ++i) {
      epochs[epoch].push_back(static_cast<std::int64_t>(batch.labels[i * 2]));
    }
  }
  for (auto& ids : epochs) {
    std::vector<std::int64_t> sorted = ids;
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::int64_t> expected(static_cast<std::size_t>(set.total()));
    std::iota(expected.begin(), expected.end(), 0);
    CHECK(sorted == expected);
  }
  CHECK(epochs[0] != epochs[1]);  // each epoch has its own order
  std::vector<std::int64_t> identity(epochs[0].size());
  std::iota(identity.begin(), identity.end(), 0);
  CHECK(epochs[0] != identity);
}

TEST_CASE("reader rank split covers every sample exactly once", "[reader]") {
  ShardSet set;
  for (const int ranks : {1, 2, 3, 5, 40}) {
    std::vector<std::int64_t> seen;
    std::int64_t counted = 0;
    for (int rank = 0; rank < ranks; ++rank) {
      auto options = options_for(set);
      options.rank = rank;
      options.num_ranks = ranks;
      DatasetReader reader(options);
      counted += reader.samples_per_epoch();
      const auto ids = sample_ids(read_batches(reader), 2);
      CHECK(static_cast<std::int64_t>(ids.size()) == reader.samples_per_epoch());
      seen.insert(seen.end(), ids.begin(), ids.end());
    }
    std::sort(seen.begin(), seen.end());
    std::vector<std::int64_t> expected(static_cast<std::size_t>(set.total()));
    std::iota(expected.begin(), expected.end(), 0);
    CHECK(seen == expected);
    CHECK(counted == set.total());
  }
}

TEST_CASE("reader order depends on the seed only, not on threads or prefetch", "[reader]") {
  ShardSet set;
  auto options = options_for(set);
  options.num_epochs = 2;
  options.decode_threads = 1;
  options.prefetch_units = 4;
  DatasetReader single(options);
  const auto reference = read_batches(single);
  for (const auto& [threads, prefetch] :
       std::vector<std::pair<int, int>>{{2, 4}, {4, 16}, {3, 64}}) {
    options.decode_threads = threads;
    options.prefetch_units = prefetch;
    DatasetReader reader(options);
    CHECK(same_batches(read_batches(reader), reference));
  }
  options.seed = 43;
  DatasetReader other_seed(options);
  CHECK_FALSE(same_batches(read_batches(other_seed), reference));
}

TEST_CASE("reader position saved mid-epoch restores the exact continuation", "[reader]") {
  ShardSet set;
  auto options = options_for(set);
  options.num_epochs = 3;
  options.batch_size = 37;
  DatasetReader uninterrupted(options);
  const auto reference = read_batches(uninterrupted);
  REQUIRE(reference.size() > 40);
  for (const std::size_t stop_after : {0u, 1u, 5u, 17u, 18u, 19u, 35u, 52u}) {
    DatasetReader first(options);
    const auto head = read_batches(first, stop_after);
    REQUIRE(head.size() == stop_after);
    const std::string saved = first.position().serialize();

    DatasetReader second(options);
    second.restore(ReaderPosition::deserialize(saved));
    const auto tail = read_batches(second);
    REQUIRE(head.size() + tail.size() == reference.size());
    CHECK(
        same_batches(head, std::vector<Batch>(reference.begin(), reference.begin() + stop_after)));
    CHECK(same_batches(tail, std::vector<Batch>(reference.begin() + stop_after, reference.end())));
  }
}

TEST_CASE("reader position refuses a reader with other settings", "[reader]") {
  ShardSet set;
  auto options = options_for(set);
  DatasetReader reader(options);
  Batch batch;
  reader.next(batch);
  const ReaderPosition position = reader.position();
  options.seed = 7;
  DatasetReader other(options);
  CHECK_THROWS_AS(other.restore(position), std::invalid_argument);
  CHECK_THROWS_AS(ReaderPosition::deserialize("epoch=1"), std::invalid_argument);
  CHECK_THROWS_AS(ReaderPosition::deserialize("drgrad-reader-position v1 epoch=x window=0 "
                                              "sample=0 plan=1"),
                  std::invalid_argument);
  CHECK(ReaderPosition::deserialize(position.serialize()) == position);
}

TEST_CASE("reader drop_remainder keeps only full batches and never spans epochs", "[reader]") {
  ShardSet set;
  auto options = options_for(set);
  options.num_epochs = 2;
  options.drop_remainder = true;
  DatasetReader reader(options);
  const auto batches = read_batches(reader);
  CHECK(batches.size() == 2 * (647 / 50));
  for (const auto& batch : batches) CHECK(batch.size == 50);
  options.drop_remainder = false;
  DatasetReader keep(options);
  const auto all = read_batches(keep);
  REQUIRE(all.size() == 26);
  CHECK(all[12].size == 47);
  CHECK(all[25].size == 47);
}

TEST_CASE("reader reads TensorFlow criteo files split by record ranges among ranks",
          "[reader][shared-data]") {
  DRGRAD_REQUIRE_SHARED_DATA();
  Schema schema;
  for (int i = 1; i <= 13; ++i) schema.dense_features.push_back(numbered("I", i));
  for (int i = 1; i <= 26; ++i) schema.sparse_slots.push_back({numbered("C", i), 0});
  schema.labels = {"label"};
  ExampleMapping mapping;
  mapping.schema = schema;
  const std::vector<std::string> files = {shared_tfrecord("criteo_sample.tr.tfrecords"),
                                          shared_tfrecord("criteo_sample.te.tfrecords")};
  // The (I1, C1) pairs of every record, read directly.
  std::multiset<std::pair<float, std::int64_t>> expected;
  for (const auto& file : files) {
    TfRecordReader direct(file);
    std::span<const std::byte> record;
    while (direct.next(record)) {
      const Example example = decode_example(record);
      expected.emplace(example.at("I1").float_values[0], example.at("C1").int64_values[0]);
    }
  }
  REQUIRE(expected.size() == 200);
  std::multiset<std::pair<float, std::int64_t>> seen;
  for (int rank = 0; rank < 3; ++rank) {
    DatasetReaderOptions options;
    options.files = files;
    options.example_mapping = mapping;
    options.tfrecord_records_per_unit = 16;
    options.batch_size = 32;
    options.rank = rank;
    options.num_ranks = 3;
    DatasetReader reader(options);
    Batch batch;
    while (reader.next(batch)) {
      REQUIRE_NOTHROW(batch.validate(schema));
      for (std::int64_t i = 0; i < batch.size; ++i) {
        seen.emplace(batch.dense[i * 13], batch.sparse[0].ids[batch.sparse[0].offsets[i]]);
      }
    }
  }
  CHECK(seen == expected);
}

TEST_CASE("reader reads gzip penguin files as whole-file units", "[reader][shared-data]") {
  DRGRAD_REQUIRE_SHARED_DATA();
  ExampleMapping mapping;
  mapping.schema.dense_features = {"body_mass_g", "culmen_depth_mm", "culmen_length_mm",
                                   "flipper_length_mm"};
  mapping.schema.labels = {"species"};
  DatasetReaderOptions options;
  options.files = {shared_tfrecord("penguin-train.tfrecord.gz"),
                   shared_tfrecord("penguin-eval.tfrecord.gz")};
  options.example_mapping = mapping;
  options.batch_size = 64;
  DatasetReader reader(options);
  CHECK(reader.units_per_epoch() == 2);
  CHECK(reader.samples_per_epoch() == -1);  // compressed files are counted only as they are read
  std::int64_t total = 0;
  Batch batch;
  while (reader.next(batch)) total += batch.size;
  CHECK(total == 334);
}

TEST_CASE("reader skips a damaged shard block with skip_corrupt and counts it", "[reader]") {
  ShardSet set;
  // Damage one byte inside the payload of the second block of the first shard.
  const ShardFile intact(set.files[0]);
  std::string bytes = read_whole_file(set.files[0]);
  bytes[intact.blocks()[1].byte_offset + 40] ^= 0x5a;
  write_whole_file(set.files[0], bytes);

  auto options = options_for(set);
  options.shuffle = false;
  {
    DatasetReader strict(options);
    Batch batch;
    CHECK_THROWS_AS(read_batches(strict), CorruptRecordError);
  }
  options.skip_corrupt = true;
  DatasetReader lenient(options);
  const auto ids = sample_ids(read_batches(lenient), 2);
  CHECK(lenient.corrupt_records_skipped() == 1);
  CHECK(static_cast<std::int64_t>(ids.size()) == set.total() - 32);
  CHECK(std::find(ids.begin(), ids.end(), 40) == ids.end());  // block 1 held samples 32..63
  CHECK(std::find(ids.begin(), ids.end(), 64) != ids.end());
}

TEST_CASE("reader rejects shards of another schema and unusable options", "[reader]") {
  ShardSet set;
  auto options = options_for(set);
  options.expected_schema = make_schema(3, 2, 1);
  CHECK_THROWS_AS(DatasetReader(options), SchemaMismatchError);
  options = options_for(set);
  options.rank = 3;
  options.num_ranks = 3;
  CHECK_THROWS_AS(DatasetReader(options), std::invalid_argument);
  options = options_for(set);
  options.files.clear();
  CHECK_THROWS_AS(DatasetReader(options), std::invalid_argument);
}

namespace {
// 300 Examples with label "id" = record number, "x" dense and "tags" bytes ids, in one file.
// Returns the byte offset of every record.
std::vector<std::uint64_t> write_id_examples(const std::string& path, Compression compression) {
  TfRecordWriter writer(path, {compression, -1});
  std::vector<std::uint64_t> offsets;
  std::uint64_t offset = 0;
  for (int i = 0; i < 300; ++i) {
    Example example;
    example["id"] = Feature::of_int64s({i});
    example["x"] = Feature::of_floats({0.5f * static_cast<float>(i)});
    example["tags"] = Feature::of_bytes({numbered("t", i % 7)});
    const std::string record = encode_example(example);
    writer.write(record);
    offsets.push_back(offset);
    offset += record.size() + 16;
  }
  writer.close();
  return offsets;
}

ExampleMapping id_mapping() {
  ExampleMapping mapping;
  mapping.schema.dense_features = {"x"};
  mapping.schema.sparse_slots = {{"tags", 100}};
  mapping.schema.labels = {"id"};
  return mapping;
}
}  // namespace

TEST_CASE("reader position restores exactly on TFRecord input", "[reader]") {
  TemporaryFolder folder;
  write_id_examples(folder.file("a.tfrecord"), Compression::none);
  write_id_examples(folder.file("b.tfrecord.gz"), Compression::gzip);
  DatasetReaderOptions options;
  options.files = {folder.file("a.tfrecord"), folder.file("b.tfrecord.gz")};
  options.example_mapping = id_mapping();
  options.tfrecord_records_per_unit = 32;
  options.shuffle_window_units = 3;
  options.batch_size = 29;
  options.num_epochs = 2;
  options.seed = 9;
  DatasetReader uninterrupted(options);
  CHECK(uninterrupted.units_per_epoch() == 10 + 1);  // 300 / 32 ranges + one gzip file
  const auto reference = read_batches(uninterrupted);
  for (const std::size_t stop_after : {3u, 11u, 21u, 22u}) {
    DatasetReader first(options);
    const auto head = read_batches(first, stop_after);
    DatasetReader second(options);
    second.restore(first.position());
    const auto tail = read_batches(second);
    REQUIRE(head.size() + tail.size() == reference.size());
    CHECK(same_batches(tail, std::vector<Batch>(reference.begin() + stop_after, reference.end())));
  }
}

TEST_CASE("reader skips a damaged TFRecord record with skip_corrupt and counts it", "[reader]") {
  TemporaryFolder folder;
  const std::string path = folder.file("ids.tfrecord");
  const auto offsets = write_id_examples(path, Compression::none);
  std::string bytes = read_whole_file(path);
  bytes[offsets[50] + 14] ^= 0x01;  // inside record 50's payload
  write_whole_file(path, bytes);
  DatasetReaderOptions options;
  options.files = {path};
  options.example_mapping = id_mapping();
  options.tfrecord_records_per_unit = 64;
  options.shuffle = false;
  {
    DatasetReader strict(options);
    try {
      read_batches(strict);
      FAIL("no error");
    } catch (const CorruptRecordError& error) {
      CHECK(error.location().record_index == 50);
      CHECK(error.location().byte_offset == static_cast<std::int64_t>(offsets[50]));
    }
  }
  options.skip_corrupt = true;
  DatasetReader lenient(options);
  const auto ids = sample_ids(read_batches(lenient), 1);
  CHECK(ids.size() == 299);
  CHECK(std::find(ids.begin(), ids.end(), 50) == ids.end());
  CHECK(lenient.corrupt_records_skipped() == 1);
}

TEST_CASE("reader splits TFRecord files among ranks by whole file on request", "[reader]") {
  TemporaryFolder folder;
  std::vector<std::string> files;
  for (int f = 0; f < 3; ++f) {
    files.push_back(folder.file(numbered("part-", f) + ".tfrecord"));
    write_id_examples(files.back(), Compression::none);
  }
  for (int rank = 0; rank < 2; ++rank) {
    DatasetReaderOptions options;
    options.files = files;
    options.example_mapping = id_mapping();
    options.tfrecord_split_by_file = true;
    options.rank = rank;
    options.num_ranks = 2;
    DatasetReader reader(options);
    CHECK(reader.units_per_epoch() == (rank == 0 ? 2 : 1));
    CHECK(reader.samples_per_epoch() == (rank == 0 ? 600 : 300));
    CHECK(static_cast<std::int64_t>(sample_ids(read_batches(reader), 1).size()) ==
          reader.samples_per_epoch());
  }
}

TEST_CASE("reader retry after a read error continues exactly as if nothing failed", "[reader]") {
  ShardSet set;
  auto options = options_for(set);
  options.batch_size = 45;  // batches straddle windows
  DatasetReader uninterrupted(options);
  const auto reference = read_batches(uninterrupted);

  // Damage every block of the middle shard, read into the error, repair, and go on.
  const std::string original = read_whole_file(set.files[1]);
  const ShardFile middle(set.files[1]);
  std::string damaged = original;
  for (const auto& block : middle.blocks()) damaged[block.byte_offset + 30] ^= 0x40;
  write_whole_file(set.files[1], damaged);
  DatasetReader reader(options);
  std::vector<Batch> batches;
  Batch batch;
  int errors = 0;
  while (true) {
    try {
      if (!reader.next(batch)) break;
      batches.push_back(batch);
    } catch (const CorruptRecordError&) {
      ++errors;
      REQUIRE(errors == 1);
      write_whole_file(set.files[1], original);  // the retry now succeeds
    }
  }
  CHECK(errors == 1);
  CHECK(same_batches(batches, reference));
}

TEST_CASE("reader reports an empty shard file as corrupt", "[reader]") {
  ShardSet set;
  write_whole_file(set.files[1], "");
  auto options = options_for(set);
  try {
    DatasetReader reader(options);
    FAIL("no error");
  } catch (const CorruptRecordError& error) {
    CHECK(error.location().file == set.files[1]);
    CHECK_THAT(error.what(), Catch::Contains("empty"));
  }
}
