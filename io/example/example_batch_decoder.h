// Turns tf.train.Example records into samples of an io::Batch, through a mapping that says which
// Example features are dense floats, which are sparse id slots and which are labels.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "io/data/batch.h"

namespace drgrad::io {

// How the values of a sparse slot's feature become ids.
enum class SparseIdEncoding {
  automatic,     // int64_list values are ids; bytes_list values are hashed
  int64_ids,     // the feature must be an int64_list
  hashed_bytes,  // the feature must be a bytes_list; each value is hashed (hash_feature_bytes)
};

// The mapping from Example features to the engine's slots. The schema's names are the Example
// feature names: schema.dense_features are float features with one value (int64 values are
// converted), schema.sparse_slots are id lists, schema.labels are one-value float or int64
// features. When a slot's vocabulary_size is positive, ids are reduced modulo it (so hashed and
// raw ids always fit the embedding table); otherwise negative ids are an error.
struct ExampleMapping {
  Schema schema;
  std::vector<SparseIdEncoding> sparse_encodings;  // one per sparse slot; empty = all automatic
  float missing_dense_value = 0.0f;                // used when a dense feature is absent
  // Labels must be present unless this is set (absent labels then read as this value).
  bool allow_missing_labels = false;
  float missing_label_value = 0.0f;
};

// The Example is well formed but does not fit the mapping (absent label, wrong kind, several
// values in a dense feature). The message names the feature.
class ExampleMappingError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A stable 63-bit hash of a bytes value (non-negative), used for hashed sparse ids.
std::int64_t hash_feature_bytes(std::string_view bytes);

class ExampleBatchDecoder {
 public:
  // Throws std::invalid_argument when sparse_encodings has the wrong length or names repeat.
  explicit ExampleBatchDecoder(ExampleMapping mapping);

  const Schema& schema() const { return mapping_.schema; }
  const ExampleMapping& mapping() const { return mapping_; }

  // Appends the sample of `record` to `batch` (shaped for schema(); see Batch::empty_for).
  // Throws ExampleParseError for malformed bytes and ExampleMappingError for a mismatch; on
  // either, `batch` is left exactly as it was.
  void append(std::span<const std::byte> record, Batch& batch);

 private:
  enum class Role { dense, sparse, label };
  struct Target {
    Role role;
    std::size_t index;
  };
  struct TransparentHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const {
      return std::hash<std::string_view>{}(text);
    }
  };
  void append_unchecked(std::span<const std::byte> record, Batch& batch);

  ExampleMapping mapping_;
  std::unordered_map<std::string, Target, TransparentHash, std::equal_to<>> targets_;
  // What the previous records' features at each position mapped to (copied by value, so the
  // decoder stays safely copyable).
  struct Prediction {
    bool valid = false;
    bool mapped = false;
    std::string name;
    Target target{Role::dense, 0};
  };
  std::vector<Prediction> predicted_;
  // Scratch, reused across records.
  std::vector<unsigned char> seen_;
  std::vector<float> float_scratch_;
  std::vector<std::int64_t> int64_scratch_;
  std::vector<std::string_view> bytes_scratch_;
};

}  // namespace drgrad::io
