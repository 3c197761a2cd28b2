// Helpers shared by the io tests: temporary folders, whole-file reads and writes, byte views.
#pragma once

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <random>
#include <span>
#include <string>

#include "io/data/batch.h"

namespace drgrad::io::testing {

// A fresh, empty folder under the system temporary folder, removed when the object dies.
class TemporaryFolder {
 public:
  TemporaryFolder() {
    std::random_device entropy;
    path_ = std::filesystem::temp_directory_path() /
            ("drgrad-io-test-" + std::to_string(entropy()) + std::to_string(entropy()));
    std::filesystem::create_directories(path_);
  }
  ~TemporaryFolder() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string file(const std::string& name) const { return (path_ / name).string(); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_whole_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline std::span<const std::byte> as_bytes(const std::string& text) {
  return {reinterpret_cast<const std::byte*>(text.data()), text.size()};
}

inline std::string as_string(std::span<const std::byte> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

inline std::string shared_tfrecord(const std::string& name) {
  return std::string(DRGRAD_SHARED_DATA_DIR) + "/tfrecord/" + name;
}

// "C" + 7 -> "C7", written out: `"C" + std::to_string(i)` trips a GCC 12 -Wrestrict false positive.
inline std::string numbered(const char* prefix, long number) {
  std::string name(prefix);
  name.append(std::to_string(number));
  return name;
}

// A schema with `dense` dense features, `sparse` slots (vocabulary 1000) and `labels` labels.
inline Schema make_schema(int dense, int sparse, int labels) {
  Schema schema;
  for (int i = 0; i < dense; ++i) schema.dense_features.push_back("dense_" + std::to_string(i));
  for (int i = 0; i < sparse; ++i)
    schema.sparse_slots.push_back({"slot_" + std::to_string(i), 1000});
  for (int i = 0; i < labels; ++i) schema.labels.push_back("label_" + std::to_string(i));
  return schema;
}

// `samples` random samples for `schema`: 0..3 ids per slot (empty bags included). Sample i's first
// label is i + first_id, so tests can tell which samples arrived.
inline Batch make_batch(const Schema& schema, std::int64_t samples, std::uint32_t seed,
                        std::int64_t first_id = 0) {
  std::mt19937 generator(seed);
  std::uniform_real_distribution<float> value(-1.0f, 1.0f);
  Batch batch = Batch::empty_for(schema);
  batch.size = samples;
  for (std::int64_t i = 0; i < samples; ++i) {
    for (std::size_t d = 0; d < schema.num_dense(); ++d) batch.dense.push_back(value(generator));
    for (std::size_t l = 0; l < schema.num_labels(); ++l) {
      batch.labels.push_back(l == 0 ? static_cast<float>(i + first_id) : value(generator));
    }
    for (auto& column : batch.sparse) {
      const int count = static_cast<int>(generator() % 4);
      for (int k = 0; k < count; ++k)
        column.ids.push_back(static_cast<std::int64_t>(generator() % 1000));
      column.offsets.push_back(static_cast<std::int64_t>(column.ids.size()));
    }
  }
  return batch;
}

inline bool batches_equal(const Batch& a, const Batch& b) {
  if (a.size != b.size || a.dense != b.dense || a.labels != b.labels) return false;
  if (a.sparse.size() != b.sparse.size()) return false;
  for (std::size_t s = 0; s < a.sparse.size(); ++s) {
    if (a.sparse[s].ids != b.sparse[s].ids || a.sparse[s].offsets != b.sparse[s].offsets) {
      return false;
    }
  }
  return true;
}

}  // namespace drgrad::io::testing
