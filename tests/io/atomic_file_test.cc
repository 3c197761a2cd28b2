// Atomic file writing: the final name holds either the old content or the complete new content,
// never a partial file, and abandoned writes leave no temporary files behind.
#include <catch2/catch.hpp>

#include <filesystem>

#include "io/shard/shard_writer.h"
#include "io/tfrecord/tfrecord_writer.h"
#include "io/util/atomic_file.h"
#include "tests/io/test_support.h"

using namespace drgrad::io;
using namespace drgrad::io::testing;

namespace {
std::size_t files_in(const TemporaryFolder& folder) {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(folder.path())) {
    ++count;
  }
  return count;
}
}  // namespace

TEST_CASE("atomic file write creates and replaces a file", "[atomic_file]") {
  TemporaryFolder folder;
  const std::string path = folder.file("state.bin");
  write_file_atomically(path, std::string_view("first version"));
  CHECK(read_whole_file(path) == "first version");
  write_file_atomically(path, std::string_view("second"));
  CHECK(read_whole_file(path) == "second");
  write_file_atomically(path, std::string_view(""));
  CHECK(read_whole_file(path).empty());
  CHECK(files_in(folder) == 1);
}

TEST_CASE("atomic file writer streams large writes through its buffer", "[atomic_file]") {
  TemporaryFolder folder;
  const std::string path = folder.file("big.bin");
  std::string expected;
  AtomicFileWriter writer(path, 64);
  for (int i = 0; i < 1000; ++i) {
    const std::string piece(static_cast<std::size_t>(i % 200), static_cast<char>('a' + i % 26));
    writer.write(std::string_view(piece));
    expected += piece;
  }
  CHECK(writer.bytes_written() == expected.size());
  CHECK_FALSE(std::filesystem::exists(path));  // nothing under the final name before commit
  writer.commit();
  CHECK(writer.committed());
  CHECK(read_whole_file(path) == expected);
  CHECK_THROWS_AS(writer.write(std::string_view("late")), std::logic_error);
}

TEST_CASE("atomic file writer abandoned without commit leaves the old file", "[atomic_file]") {
  TemporaryFolder folder;
  const std::string path = folder.file("model.ckpt");
  write_file_atomically(path, std::string_view("good old content"));
  {
    AtomicFileWriter writer(path);
    writer.write(std::string_view("half of a new vers"));
    CHECK(std::filesystem::exists(writer.temporary_path()));
    CHECK(std::filesystem::path(writer.temporary_path()).parent_path() ==
          std::filesystem::path(path).parent_path());
  }  // destroyed without commit, as when an exception unwinds
  CHECK(read_whole_file(path) == "good old content");
  CHECK(files_in(folder) == 1);
}

TEST_CASE("atomic file writers of shards and tfrecords leave nothing when not closed",
          "[atomic_file]") {
  TemporaryFolder folder;
  const Schema schema = make_schema(2, 1, 1);
  {
    ShardWriter writer(folder.file("part.drgrad"), schema);
    writer.write(make_batch(schema, 100, 1));
  }
  {
    TfRecordWriter writer(folder.file("part.tfrecord"), {Compression::gzip, -1});
    writer.write(std::string_view("record"));
  }
  CHECK(files_in(folder) == 0);
}

TEST_CASE("atomic file write into a missing folder says which path failed", "[atomic_file]") {
  TemporaryFolder folder;
  const std::string path = folder.file("no-such-folder/file.bin");
  try {
    write_file_atomically(path, std::string_view("x"));
    FAIL("no error");
  } catch (const std::runtime_error& error) {
    CHECK_THAT(error.what(), Catch::Contains(path));
  }
}
