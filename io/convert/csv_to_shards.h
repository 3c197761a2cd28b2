// Converting raw data into drgrad shards: CSV files (plain or gzip) described by a column spec
// (roles, label rules, vocabularies or hashing, dense normalisation, train/eval split), and
// TFRecord/Example files through an ExampleMapping.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "io/data/batch.h"
#include "io/example/example_batch_decoder.h"
#include "io/shard/shard_writer.h"

namespace drgrad::io {

enum class ColumnRole { categorical, dense, label, ignore };
enum class DenseNormalization { none, standard, min_max, log1p };

// A label computed from a cell: 1 when the (trimmed) cell equals `value` (or differs, when
// `equals` is false), else 0. Written as `name == "value"` or `name != "value"`.
struct LabelRule {
  bool equals = true;
  std::string value;
  // Parses `column == "value"` / `column != "value"`; the left side must be `column_name`.
  // Throws std::invalid_argument saying what is wrong.
  static LabelRule parse(const std::string& text, const std::string& column_name);
};

struct CsvColumn {
  std::size_t field = 0;  // 0-based position in the row
  std::string name;
  ColumnRole role = ColumnRole::ignore;
  // categorical: ids from a vocabulary built over the training rows (values seen fewer than
  // min_count times share id 0, as do values unseen in training), or, when hash_buckets > 0,
  // hash_feature_bytes(value) % hash_buckets.
  std::int64_t hash_buckets = 0;
  std::int64_t min_count = 1;
  // dense: statistics come from the training rows.
  DenseNormalization normalization = DenseNormalization::none;
  // label: without a rule the cell is parsed as a number.
  std::optional<LabelRule> label_rule;
};

struct CsvConversionSpec {
  char delimiter = ',';
  bool has_header = false;  // skip the first line of each input file
  std::vector<CsvColumn> columns;
  // Split: data line i (0-based over all inputs, header excluded) goes to training when
  // i % split_modulus < train_below; everything is training when split_modulus is 0.
  std::int64_t split_modulus = 0;
  std::int64_t train_below = 0;
};

// Reads a spec from a TOML file (see configs/census_schema.toml for the layout). Throws
// std::runtime_error naming the file and the offending key.
CsvConversionSpec load_csv_spec(const std::string& toml_path);

struct CsvConversionOptions {
  std::vector<std::string> inputs;  // CSV files, plain or gzip (detected by magic bytes)
  std::string output_folder;
  std::int64_t samples_per_shard = 1 << 20;
  ShardWriterOptions shard_options;
};

struct DenseStatistics {
  double mean = 0, standard_deviation = 1, minimum = 0, maximum = 0;
};

struct CsvConversionReport {
  Schema schema;
  std::int64_t train_samples = 0;
  std::int64_t eval_samples = 0;
  std::vector<std::string> train_files;  // output_folder/train-00000.drgrad, ...
  std::vector<std::string> eval_files;   // output_folder/eval-00000.drgrad, ...
  std::map<std::string, DenseStatistics> dense_statistics;
  // Per vocabulary column: value -> id (id 0 = rare or unseen).
  std::map<std::string, std::map<std::string, std::int64_t>> vocabularies;
};

// Two passes over the inputs: statistics and vocabularies from the training rows, then the
// shards. Throws std::runtime_error naming file and line for malformed rows.
CsvConversionReport convert_csv_to_shards(const CsvConversionSpec& spec,
                                          const CsvConversionOptions& options);

// Copies every Example of `inputs` (in order) into shards of samples_per_shard samples named
// output_folder/<prefix>-00000.drgrad, ...; returns the files written.
std::vector<std::string> convert_tfrecord_to_shards(const std::vector<std::string>& inputs,
                                                    const ExampleMapping& mapping,
                                                    const std::string& output_folder,
                                                    const std::string& prefix,
                                                    std::int64_t samples_per_shard,
                                                    ShardWriterOptions shard_options = {});

}  // namespace drgrad::io
