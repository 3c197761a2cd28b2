// CSV and TFRecord conversion to drgrad shards. CSV conversion makes two passes so that
// vocabularies and normalisation statistics come from the training rows only (no leakage from the
// evaluation split), and streams rows into shard writers without holding the data set in memory.
#include "io/convert/csv_to_shards.h"

#include <toml++/toml.h>
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <memory>
#include <numeric>
#include <stdexcept>
#include <unordered_map>

#include "io/reader/dataset_reader.h"
#include "io/util/byte_source.h"

namespace drgrad::io {

namespace {

// Lines of a plain or gzip text file.
class LineReader {
 public:
  explicit LineReader(const std::string& path) : path_(path) {
    auto raw = std::make_unique<FileSource>(path);
    std::byte magic[2];
    const std::size_t got = raw->read(magic, 2);
    raw->seek(0);
    if (got == 2 && magic[0] == std::byte{0x1f} && magic[1] == std::byte{0x8b}) {
      source_ = std::make_unique<InflateSource>(std::move(raw), Compression::gzip, path);
    } else {
      source_ = std::move(raw);
    }
    buffer_.resize(256 * 1024);
  }

  bool next(std::string& line) {
    line.clear();
    while (true) {
      if (begin_ == end_) {
        if (ended_) return !line.empty();
        end_ = source_->read(buffer_.data(), buffer_.size());
        begin_ = 0;
        if (end_ == 0) {
          ended_ = true;
          return !line.empty();
        }
      }
      const char* start = reinterpret_cast<const char*>(buffer_.data()) + begin_;
      const std::size_t available = end_ - begin_;
      const void* newline = std::memchr(start, '\n', available);
      if (newline) {
        const std::size_t length = static_cast<const char*>(newline) - start;
        line.append(start, length);
        begin_ += length + 1;
        return true;
      }
      line.append(start, available);
      begin_ = end_;
    }
  }

 private:
  std::string path_;
  std::unique_ptr<ByteSource> source_;
  std::vector<std::byte> buffer_;
  std::size_t begin_ = 0, end_ = 0;
  bool ended_ = false;
};

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) {
    text.remove_suffix(1);
  }
  return text;
}

// Splits a CSV line into trimmed fields; double quotes enclose fields that contain the delimiter
// ("" inside quotes is one quote).
void split_fields(const std::string& line, char delimiter, std::vector<std::string>& fields) {
  fields.clear();
  std::string current;
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        current.push_back('"');
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        current.push_back(c);
      }
    } else if (c == '"' && trim(current).empty()) {
      current.clear();
      quoted = true;
    } else if (c == delimiter) {
      fields.emplace_back(trim(current));
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  fields.emplace_back(trim(current));
}

std::runtime_error row_error(const std::string& file, std::int64_t line, const std::string& what) {
  return std::runtime_error("'" + file + "' line " + std::to_string(line) + ": " + what);
}

double parse_number(const std::string& cell, const std::string& file, std::int64_t line,
                    const std::string& column) {
  double value = 0;
  const auto [end, error] = std::from_chars(cell.data(), cell.data() + cell.size(), value);
  if (error != std::errc() || end != cell.data() + cell.size() || cell.empty()) {
    throw row_error(file, line,
                    "column '" + column + "' holds '" + cell +
                        "', not a number; make the column categorical or ignore it in the spec");
  }
  return value;
}

bool is_train_line(const CsvConversionSpec& spec, std::int64_t index) {
  return spec.split_modulus == 0 || index % spec.split_modulus < spec.train_below;
}

// Calls visit(file, line_number, data_index, fields) for every data line of every input.
template <typename Visit>
void for_each_row(const CsvConversionSpec& spec, const std::vector<std::string>& inputs,
                  std::size_t needed_fields, Visit&& visit) {
  std::string line;
  std::vector<std::string> fields;
  std::int64_t data_index = 0;
  for (const auto& file : inputs) {
    LineReader reader(file);
    std::int64_t line_number = 0;
    while (reader.next(line)) {
      ++line_number;
      if (line_number == 1 && spec.has_header) continue;
      if (trim(line).empty()) continue;
      split_fields(line, spec.delimiter, fields);
      if (fields.size() < needed_fields) {
        throw row_error(file, line_number,
                        "the row has " + std::to_string(fields.size()) +
                            " fields, the spec uses field " + std::to_string(needed_fields - 1) +
                            "; check the delimiter and the field indexes");
      }
      visit(file, line_number, data_index, fields);
      ++data_index;
    }
  }
}

std::string shard_name(const std::string& folder, const std::string& prefix, std::size_t number) {
  char suffix[32];
  std::snprintf(suffix, sizeof(suffix), "-%05zu.drgrad", number);
  return folder + "/" + prefix + suffix;
}

// Writes batches into numbered shards of at most samples_per_shard samples.
class ShardSequence {
 public:
  ShardSequence(std::string folder, std::string prefix, Schema schema, std::int64_t per_shard,
                ShardWriterOptions options)
      : folder_(std::move(folder)),
        prefix_(std::move(prefix)),
        schema_(std::move(schema)),
        per_shard_(per_shard),
        options_(options) {}

  void write(const Batch& batch) {
    std::int64_t begin = 0;
    while (begin < batch.size) {
      if (!writer_) {
        files_.push_back(shard_name(folder_, prefix_, files_.size()));
        writer_ = std::make_unique<ShardWriter>(files_.back(), schema_, options_);
      }
      const std::int64_t room = per_shard_ - writer_->samples_written();
      const std::int64_t take = std::min(room, batch.size - begin);
      if (begin == 0 && take == batch.size) {
        writer_->write(batch);
      } else {
        std::vector<std::int64_t> rows(static_cast<std::size_t>(take));
        std::iota(rows.begin(), rows.end(), begin);
        writer_->write(gather_rows(batch, rows));
      }
      begin += take;
      total_ += take;
      if (writer_->samples_written() >= per_shard_) finish_shard();
    }
  }
  std::vector<std::string> close() {
    finish_shard();
    return files_;
  }
  std::int64_t total() const { return total_; }

 private:
  void finish_shard() {
    if (!writer_) return;
    writer_->close();
    writer_.reset();
  }
  std::string folder_, prefix_;
  Schema schema_;
  std::int64_t per_shard_;
  ShardWriterOptions options_;
  std::unique_ptr<ShardWriter> writer_;
  std::vector<std::string> files_;
  std::int64_t total_ = 0;
};

ColumnRole parse_role(const std::string& text, const std::string& where) {
  if (text == "categorical") return ColumnRole::categorical;
  if (text == "dense") return ColumnRole::dense;
  if (text == "label") return ColumnRole::label;
  if (text == "ignore") return ColumnRole::ignore;
  throw std::runtime_error(where + ": role '" + text +
                           "' is unknown; use categorical, dense, label or ignore");
}

DenseNormalization parse_normalization(const std::string& text, const std::string& where) {
  if (text == "none") return DenseNormalization::none;
  if (text == "standard") return DenseNormalization::standard;
  if (text == "min_max") return DenseNormalization::min_max;
  if (text == "log1p") return DenseNormalization::log1p;
  throw std::runtime_error(where + ": normalize '" + text +
                           "' is unknown; use none, standard, min_max or log1p");
}

}  // namespace

LabelRule LabelRule::parse(const std::string& text, const std::string& column_name) {
  const auto equals_at = text.find("==");
  const auto differs_at = text.find("!=");
  const auto at = equals_at != std::string::npos ? equals_at : differs_at;
  if (at == std::string::npos) {
    throw std::invalid_argument("label rule '" + text + "' needs == or !=, as in " + column_name +
                                " == \"value\"");
  }
  const std::string left(trim(std::string_view(text).substr(0, at)));
  std::string right(trim(std::string_view(text).substr(at + 2)));
  if (!left.empty() && left != column_name) {
    throw std::invalid_argument("label rule '" + text + "' tests '" + left +
                                "' but belongs to column '" + column_name + "'");
  }
  if (right.size() < 2 || right.front() != '"' || right.back() != '"') {
    throw std::invalid_argument("label rule '" + text + "': quote the value, as in " + column_name +
                                " == \"value\"");
  }
  LabelRule rule;
  rule.equals = equals_at != std::string::npos;
  rule.value = std::string(trim(std::string_view(right).substr(1, right.size() - 2)));
  return rule;
}

CsvConversionSpec load_csv_spec(const std::string& toml_path) {
  toml::table table;
  try {
    table = toml::parse_file(toml_path);
  } catch (const toml::parse_error& error) {
    throw std::runtime_error("cannot parse '" + toml_path +
                             "': " + std::string(error.description()) + " at line " +
                             std::to_string(error.source().begin.line));
  }
  CsvConversionSpec spec;
  const std::string delimiter = table["csv"]["delimiter"].value_or(std::string(","));
  if (delimiter.size() != 1) {
    throw std::runtime_error("'" + toml_path + "': csv.delimiter must be one character");
  }
  spec.delimiter = delimiter[0];
  spec.has_header = table["csv"]["header"].value_or(false);
  spec.split_modulus = table["split"]["modulus"].value_or(std::int64_t{0});
  spec.train_below = table["split"]["train_below"].value_or(std::int64_t{0});
  if (spec.split_modulus < 0 || spec.train_below < 0 ||
      (spec.split_modulus > 0 && spec.train_below > spec.split_modulus)) {
    throw std::runtime_error("'" + toml_path +
                             "': split needs 0 <= train_below <= modulus (modulus 0 = no split)");
  }
  const std::int64_t default_buckets =
      table["categorical"]["hash_buckets"].value_or(std::int64_t{0});
  const std::int64_t default_min_count =
      table["categorical"]["min_count"].value_or(std::int64_t{1});
  const toml::array* columns = table["column"].as_array();
  if (!columns || columns->empty()) {
    throw std::runtime_error("'" + toml_path + "' has no [[column]] entries");
  }
  for (std::size_t i = 0; i < columns->size(); ++i) {
    const toml::table* entry = (*columns)[i].as_table();
    const std::string where = "'" + toml_path + "' column entry " + std::to_string(i);
    if (!entry) throw std::runtime_error(where + " is not a table");
    CsvColumn column;
    const auto field = (*entry)["field"].value<std::int64_t>();
    const auto name = (*entry)["name"].value<std::string>();
    const auto role = (*entry)["role"].value<std::string>();
    if (!field || *field < 0 || !name || !role) {
      throw std::runtime_error(where + " needs field (>= 0), name and role");
    }
    column.field = static_cast<std::size_t>(*field);
    column.name = *name;
    column.role = parse_role(*role, where);
    column.hash_buckets = (*entry)["hash_buckets"].value_or(default_buckets);
    column.min_count = (*entry)["min_count"].value_or(default_min_count);
    column.normalization =
        parse_normalization((*entry)["normalize"].value_or(std::string("none")), where);
    if (const auto rule = (*entry)["rule"].value<std::string>()) {
      try {
        column.label_rule = LabelRule::parse(*rule, column.name);
      } catch (const std::invalid_argument& error) {
        throw std::runtime_error(where + ": " + error.what());
      }
    }
    spec.columns.push_back(std::move(column));
  }
  return spec;
}

CsvConversionReport convert_csv_to_shards(const CsvConversionSpec& spec,
                                          const CsvConversionOptions& options) {
  if (options.inputs.empty()) {
    throw std::invalid_argument("convert_csv_to_shards: no input files");
  }
  if (options.samples_per_shard <= 0) {
    throw std::invalid_argument("convert_csv_to_shards: samples_per_shard must be positive");
  }
  std::size_t needed_fields = 0;
  std::vector<const CsvColumn*> dense, categorical, labels;
  for (const auto& column : spec.columns) {
    needed_fields = std::max(needed_fields, column.field + 1);
    if (column.role == ColumnRole::dense) dense.push_back(&column);
    if (column.role == ColumnRole::categorical) categorical.push_back(&column);
    if (column.role == ColumnRole::label) labels.push_back(&column);
  }

  // Pass 1: vocabularies and dense statistics over the training rows.
  std::vector<std::unordered_map<std::string, std::int64_t>> counts(categorical.size());
  struct Accumulator {
    double sum = 0, sum_squares = 0, minimum = INFINITY, maximum = -INFINITY;
    std::int64_t count = 0;
  };
  std::vector<Accumulator> accumulators(dense.size());
  for_each_row(spec, options.inputs, needed_fields,
               [&](const std::string& file, std::int64_t line, std::int64_t index,
                   const std::vector<std::string>& fields) {
                 if (!is_train_line(spec, index)) return;
                 for (std::size_t c = 0; c < categorical.size(); ++c) {
                   if (categorical[c]->hash_buckets == 0)
                     ++counts[c][fields[categorical[c]->field]];
                 }
                 for (std::size_t d = 0; d < dense.size(); ++d) {
                   const double value =
                       parse_number(fields[dense[d]->field], file, line, dense[d]->name);
                   Accumulator& a = accumulators[d];
                   a.sum += value;
                   a.sum_squares += value * value;
                   a.minimum = std::min(a.minimum, value);
                   a.maximum = std::max(a.maximum, value);
                   ++a.count;
                 }
               });

  CsvConversionReport report;
  std::vector<std::unordered_map<std::string, std::int64_t>> ids(categorical.size());
  for (std::size_t c = 0; c < categorical.size(); ++c) {
    const CsvColumn& column = *categorical[c];
    std::int64_t vocabulary_size = column.hash_buckets;
    if (column.hash_buckets == 0) {
      std::vector<std::pair<std::string, std::int64_t>> kept;
      for (const auto& [value, count] : counts[c]) {
        if (count >= column.min_count) kept.emplace_back(value, count);
      }
      // Most frequent first, ties by value: the same data always gives the same ids.
      std::sort(kept.begin(), kept.end(), [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
      });
      auto& vocabulary = report.vocabularies[column.name];
      for (std::size_t k = 0; k < kept.size(); ++k) {
        ids[c][kept[k].first] = static_cast<std::int64_t>(k + 1);
        vocabulary[kept[k].first] = static_cast<std::int64_t>(k + 1);
      }
      vocabulary_size = static_cast<std::int64_t>(kept.size()) + 1;
    }
    report.schema.sparse_slots.push_back({column.name, vocabulary_size});
  }
  std::vector<DenseStatistics> statistics(dense.size());
  for (std::size_t d = 0; d < dense.size(); ++d) {
    const Accumulator& a = accumulators[d];
    DenseStatistics& s = statistics[d];
    if (a.count > 0) {
      s.mean = a.sum / static_cast<double>(a.count);
      const double variance =
          std::max(0.0, a.sum_squares / static_cast<double>(a.count) - s.mean * s.mean);
      s.standard_deviation = variance > 0 ? std::sqrt(variance) : 1.0;
      s.minimum = a.minimum;
      s.maximum = a.maximum;
    }
    report.schema.dense_features.push_back(dense[d]->name);
    report.dense_statistics[dense[d]->name] = s;
  }
  for (const auto* column : labels) report.schema.labels.push_back(column->name);

  // Pass 2: rows into shards.
  ShardSequence train(options.output_folder, "train", report.schema, options.samples_per_shard,
                      options.shard_options);
  ShardSequence eval(options.output_folder, "eval", report.schema, options.samples_per_shard,
                     options.shard_options);
  constexpr std::int64_t kRowsPerFlush = 4096;
  Batch train_rows = Batch::empty_for(report.schema);
  Batch eval_rows = Batch::empty_for(report.schema);
  for_each_row(
      spec, options.inputs, needed_fields,
      [&](const std::string& file, std::int64_t line, std::int64_t index,
          const std::vector<std::string>& fields) {
        const bool to_train = is_train_line(spec, index);
        Batch& rows = to_train ? train_rows : eval_rows;
        for (std::size_t d = 0; d < dense.size(); ++d) {
          const CsvColumn& column = *dense[d];
          double value = parse_number(fields[column.field], file, line, column.name);
          const DenseStatistics& s = statistics[d];
          switch (column.normalization) {
            case DenseNormalization::none:
              break;
            case DenseNormalization::standard:
              value = (value - s.mean) / s.standard_deviation;
              break;
            case DenseNormalization::min_max:
              value = s.maximum > s.minimum ? (value - s.minimum) / (s.maximum - s.minimum) : 0.0;
              break;
            case DenseNormalization::log1p:
              value = std::log1p(std::max(0.0, value));
              break;
          }
          rows.dense.push_back(static_cast<float>(value));
        }
        for (const CsvColumn* column : labels) {
          const std::string& cell = fields[column->field];
          if (column->label_rule) {
            const bool match = cell == column->label_rule->value;
            rows.labels.push_back(match == column->label_rule->equals ? 1.0f : 0.0f);
          } else {
            rows.labels.push_back(static_cast<float>(parse_number(cell, file, line, column->name)));
          }
        }
        for (std::size_t c = 0; c < categorical.size(); ++c) {
          const CsvColumn& column = *categorical[c];
          const std::string& cell = fields[column.field];
          std::int64_t id = 0;
          if (column.hash_buckets > 0) {
            id = hash_feature_bytes(cell) % column.hash_buckets;
          } else {
            const auto found = ids[c].find(cell);
            id = found == ids[c].end() ? 0 : found->second;
          }
          rows.sparse[c].ids.push_back(id);
          rows.sparse[c].offsets.push_back(static_cast<std::int64_t>(rows.sparse[c].ids.size()));
        }
        ++rows.size;
        if (rows.size == kRowsPerFlush) {
          (to_train ? train : eval).write(rows);
          rows = Batch::empty_for(report.schema);
        }
      });
  train.write(train_rows);
  eval.write(eval_rows);
  report.train_files = train.close();
  report.eval_files = eval.close();
  report.train_samples = train.total();
  report.eval_samples = eval.total();
  return report;
}

std::vector<std::string> convert_tfrecord_to_shards(const std::vector<std::string>& inputs,
                                                    const ExampleMapping& mapping,
                                                    const std::string& output_folder,
                                                    const std::string& prefix,
                                                    std::int64_t samples_per_shard,
                                                    ShardWriterOptions shard_options) {
  DatasetReaderOptions reader_options;
  reader_options.files = inputs;
  reader_options.format = DataFormat::tfrecord;
  reader_options.example_mapping = mapping;
  reader_options.shuffle = false;
  reader_options.batch_size = 4096;
  DatasetReader reader(reader_options);
  ShardSequence shards(output_folder, prefix, mapping.schema, samples_per_shard, shard_options);
  Batch batch;
  while (reader.next(batch)) shards.write(batch);
  return shards.close();
}

}  // namespace drgrad::io
