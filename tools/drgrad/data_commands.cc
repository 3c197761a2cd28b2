// `drgrad convert`, `drgrad synth` and `drgrad inspect`: getting data into shards and looking at
// shards and TensorFlow's TFRecord files.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <map>
#include <set>

#include "engine/config/example_mapping_file.h"
#include "io/convert/csv_to_shards.h"
#include "io/example/example.h"
#include "io/generators/drgrad_synthetic_generator.h"
#include "io/generators/mmoe_generator.h"
#include "io/shard/shard_file.h"
#include "io/shard/shard_format.h"
#include "io/shard/shard_writer.h"
#include "io/tfrecord/tfrecord_reader.h"
#include "tools/drgrad/commands.h"

namespace drgrad::tools {

namespace fs = std::filesystem;

namespace {
io::ShardWriterOptions shard_options(int zstd_level, std::int64_t samples_per_block) {
  io::ShardWriterOptions options;
  if (zstd_level <= 0) {
    options.codec = io::shard::BlockCodec::none;
  } else {
    options.level = zstd_level;
  }
  options.samples_per_block = samples_per_block;
  return options;
}

void write_shard(const std::string& path, const io::GeneratedData& data,
                 const io::ShardWriterOptions& options) {
  io::ShardWriter writer(path, data.schema, options);
  writer.write(data.batch);
  writer.close();
}

// Running statistics of one column.
struct ColumnStatistics {
  std::int64_t count = 0;
  double sum = 0, sum_squares = 0;
  double minimum = INFINITY, maximum = -INFINITY;
  void add(double value) {
    ++count;
    sum += value;
    sum_squares += value * value;
    minimum = std::min(minimum, value);
    maximum = std::max(maximum, value);
  }
  double mean() const { return count ? sum / count : NAN; }
  double deviation() const {
    return count ? std::sqrt(std::max(0.0, sum_squares / count - mean() * mean())) : NAN;
  }
};

void print_statistics_row(const std::string& name, const std::string& kind,
                          const ColumnStatistics& stats, const std::string& extra = "") {
  std::cout << "  " << std::left << std::setw(24) << name << std::setw(10) << kind << std::right
            << std::setw(12) << std::setprecision(5) << stats.mean() << std::setw(12)
            << stats.deviation() << std::setw(12) << stats.minimum << std::setw(12) << stats.maximum
            << "  " << extra << "\n";
}

bool is_shard_file(const std::string& path) {
  io::TfRecordReaderOptions options;
  options.compression = io::Compression::none;
  try {
    io::TfRecordReader reader(path, options);
    std::span<const std::byte> record;
    return reader.next(record) && record.size() >= 8 &&
           std::memcmp(record.data(), io::shard::kHeaderMagic, 8) == 0;
  } catch (const std::exception&) {
    return false;  // not uncompressed TFRecord framing: not a shard either
  }
}

int inspect_shard(const std::string& path, bool verify) {
  io::ShardFile shard(path);
  const io::Schema& schema = shard.schema();
  std::cout << path << ": drgrad shard, " << shard.total_samples() << " samples in "
            << shard.num_blocks() << " blocks, " << shard.file_size() << " bytes\n"
            << "  schema: " << schema.describe() << "\n  fingerprint: " << std::hex
            << schema.fingerprint() << std::dec << "\n";
  if (!verify) {
    std::cout << "  (pass --verify to decode every block, check every CRC and print statistics)\n";
    return 0;
  }
  std::vector<ColumnStatistics> dense(schema.num_dense()), labels(schema.num_labels()),
      bag_sizes(schema.num_sparse());
  std::vector<std::set<std::int64_t>> distinct(schema.num_sparse());
  io::BlockDecoder decoder;
  std::vector<std::byte> scratch;
  io::Batch batch;
  for (std::int64_t block = 0; block < shard.num_blocks(); ++block) {
    shard.read_block(block, decoder, scratch, batch);
    for (std::int64_t i = 0; i < batch.size; ++i) {
      for (std::size_t f = 0; f < dense.size(); ++f)
        dense[f].add(batch.dense[i * dense.size() + f]);
      for (std::size_t f = 0; f < labels.size(); ++f) {
        labels[f].add(batch.labels[i * labels.size() + f]);
      }
    }
    for (std::size_t s = 0; s < bag_sizes.size(); ++s) {
      const auto& column = batch.sparse[s];
      for (std::int64_t i = 0; i < batch.size; ++i) {
        bag_sizes[s].add(static_cast<double>(column.offsets[i + 1] - column.offsets[i]));
      }
      distinct[s].insert(column.ids.begin(), column.ids.end());
    }
  }
  std::cout << "  every block decoded and its CRC checked: OK\n\n  " << std::left << std::setw(24)
            << "column" << std::setw(10) << "kind" << std::right << std::setw(12) << "mean"
            << std::setw(12) << "std" << std::setw(12) << "min" << std::setw(12) << "max"
            << "\n";
  for (std::size_t f = 0; f < dense.size(); ++f) {
    print_statistics_row(schema.dense_features[f], "dense", dense[f]);
  }
  for (std::size_t s = 0; s < bag_sizes.size(); ++s) {
    print_statistics_row(schema.sparse_slots[s].name, "ids/sample", bag_sizes[s],
                         std::to_string(distinct[s].size()) + " distinct ids, vocabulary " +
                             std::to_string(schema.sparse_slots[s].vocabulary_size));
  }
  for (std::size_t f = 0; f < labels.size(); ++f) {
    print_statistics_row(schema.labels[f], "label", labels[f]);
  }
  return 0;
}

int inspect_tfrecord(const std::string& path, bool verify) {
  io::TfRecordReader reader(path);
  std::span<const std::byte> record;
  std::int64_t records = 0;
  struct FeatureSummary {
    io::FeatureKind kind = io::FeatureKind::none;
    std::int64_t present = 0;
    ColumnStatistics values_per_record;
    ColumnStatistics numeric;
  };
  std::map<std::string, FeatureSummary> features;
  std::vector<float> floats;
  std::vector<std::int64_t> ints;
  // Without --verify only the first 1000 records are decoded for the feature table (lengths are
  // still checked for every record to count them).
  while (true) {
    const bool decode = verify || records < 1000;
    if (decode) {
      if (!reader.next(record)) break;
      io::for_each_feature(record, [&](const io::FeatureView& feature) {
        FeatureSummary& summary = features[std::string(feature.name)];
        summary.kind = feature.kind;
        ++summary.present;
        summary.values_per_record.add(static_cast<double>(io::count_values(feature)));
        if (feature.kind == io::FeatureKind::float_list) {
          floats.clear();
          io::append_float_values(feature.list, floats);
          for (const float v : floats) summary.numeric.add(v);
        } else if (feature.kind == io::FeatureKind::int64_list) {
          ints.clear();
          io::append_int64_values(feature.list, ints);
          for (const auto v : ints) summary.numeric.add(static_cast<double>(v));
        }
      });
    } else if (!reader.skip()) {
      break;
    }
    ++records;
  }
  std::cout << path << ": TFRecord ("
            << (reader.compression() == io::Compression::gzip   ? "GZIP"
                : reader.compression() == io::Compression::zlib ? "ZLIB"
                                                                : "uncompressed")
            << "), " << records << " records" << (verify ? ", every record's CRC checked: OK" : "")
            << "\n";
  std::cout << "  tf.train.Example features" << (verify ? "" : " (first 1000 records)") << ":\n  "
            << std::left << std::setw(24) << "feature" << std::setw(10) << "kind" << std::right
            << std::setw(12) << "mean" << std::setw(12) << "std" << std::setw(12) << "min"
            << std::setw(12) << "max"
            << "  values/record\n";
  for (const auto& [name, summary] : features) {
    print_statistics_row(name, io::to_string(summary.kind), summary.numeric,
                         std::to_string(summary.values_per_record.mean()) + " (in " +
                             std::to_string(summary.present) + " records)");
  }
  return 0;
}
}  // namespace

int run_convert(const ConvertArguments& arguments) {
  fs::create_directories(arguments.output);
  const io::ShardWriterOptions options =
      shard_options(arguments.zstd_level, arguments.samples_per_block);
  if (!arguments.csv_schema.empty()) {
    const io::CsvConversionSpec spec = io::load_csv_spec(arguments.csv_schema);
    io::CsvConversionOptions conversion;
    conversion.inputs = arguments.inputs;
    conversion.output_folder = arguments.output;
    conversion.samples_per_shard = arguments.samples_per_shard;
    conversion.shard_options = options;
    const io::CsvConversionReport report = io::convert_csv_to_shards(spec, conversion);
    std::cout << "converted " << report.train_samples << " training and " << report.eval_samples
              << " evaluation samples\n  schema: " << report.schema.describe() << "\n";
    for (const auto& file : report.train_files) std::cout << "  train: " << file << "\n";
    for (const auto& file : report.eval_files) std::cout << "  eval:  " << file << "\n";
    return 0;
  }
  const io::ExampleMapping mapping = engine::load_example_mapping(arguments.example_schema);
  const auto files =
      io::convert_tfrecord_to_shards(arguments.inputs, mapping, arguments.output, arguments.prefix,
                                     arguments.samples_per_shard, options);
  std::cout << "converted " << arguments.inputs.size() << " TFRecord files into " << files.size()
            << " shards\n";
  for (const auto& file : files) std::cout << "  " << file << "\n";
  return 0;
}

int run_synth(const SynthArguments& arguments) {
  fs::create_directories(arguments.output);
  const io::ShardWriterOptions options = shard_options(arguments.zstd_level, 4096);
  for (const auto& [name, samples, stream] :
       {std::tuple<std::string, std::int64_t, std::uint64_t>{"train", arguments.train_samples, 0},
        {"eval", arguments.eval_samples, 1}}) {
    if (samples <= 0) continue;
    io::GeneratedData data;
    if (arguments.generator == "mmoe") {
      io::MmoeGeneratorOptions generator;
      generator.num_samples = samples;
      generator.seed = arguments.seed;
      generator.sample_stream = stream;
      generator.correlation = arguments.correlation;
      generator.sparse_slots = arguments.sparse_slots;
      data = io::generate_mmoe(generator);
    } else if (arguments.generator == "drgrad_synthetic") {
      io::DrgradGeneratorOptions generator;
      generator.num_samples = samples;
      generator.seed = arguments.seed;
      generator.sample_stream = stream;
      generator.cos_theta = arguments.cos_theta;
      data = io::generate_drgrad_synthetic(generator);
    } else {
      throw std::invalid_argument("unknown generator '" + arguments.generator +
                                  "': use mmoe or drgrad_synthetic");
    }
    const std::string path = (fs::path(arguments.output) / (name + "-00000.drgrad")).string();
    write_shard(path, data, options);
    std::cout << "wrote " << samples << " samples to " << path << "\n";
  }
  return 0;
}

int run_inspect(const std::vector<std::string>& files, bool verify) {
  for (const auto& file : files) {
    if (is_shard_file(file)) {
      inspect_shard(file, verify);
    } else {
      inspect_tfrecord(file, verify);
    }
  }
  return 0;
}

}  // namespace drgrad::tools
