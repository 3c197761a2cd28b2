// Read-and-decode throughput of the io layer on Census-shaped records (32 categorical slots, 7
// dense, 2 labels): TFRecord + tf.train.Example (uncompressed and GZIP) and drgrad shards (zstd
// and stored), directly and through the DatasetReader (1 and --threads decode threads, in order,
// and shuffled). Warm-up, then several timed runs; medians of wall and process CPU time.
#include <sys/utsname.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "io/data/batch.h"
#include "io/example/example.h"
#include "io/example/example_batch_decoder.h"
#include "io/reader/dataset_reader.h"
#include "io/shard/shard_file.h"
#include "io/shard/shard_writer.h"
#include "io/tfrecord/tfrecord_reader.h"
#include "io/tfrecord/tfrecord_writer.h"
#include "io/util/crc32c.h"

namespace {

using namespace drgrad::io;

// Distinct values of the 32 Census categorical columns (as in train_throughput_bench).
constexpr std::int64_t kCensusVocabularies[] = {9, 52, 47, 17, 3,  24, 15, 5,  10, 2,  3,
                                                6, 8,  6,  6,  51, 37, 8,  10, 9,  10, 3,
                                                4, 5,  43, 43, 43, 5,  3,  3,  3,  2};

struct BenchOptions {
  std::int64_t samples = 200000;
  int runs = 5;
  int threads = 2;  // DatasetReader decode threads of the multi-threaded rows
  std::int64_t batch_size = 512;
  std::int64_t block_samples = 4096;
  int zstd_level = 3;
  std::string folder;  // default: a fresh folder under the system temporary folder
  std::string json_path;
  std::string only;  // run only the rows of this name
};

#if defined(__clang__)
constexpr const char* kCompiler = "clang " __clang_version__;
#elif defined(__GNUC__)
constexpr const char* kCompiler = "gcc " __VERSION__;
#else
constexpr const char* kCompiler = "unknown compiler";
#endif
#ifdef NDEBUG
constexpr const char* kAssertions = "NDEBUG (optimised build)";
#else
constexpr const char* kAssertions = "assertions on (not a Release build: slower)";
#endif

const char* kUsage =
    "usage: io_bench [options]\n"
    "  --samples N       records written and read per format (200000)\n"
    "  --runs R          timed runs after one warm-up; the median is reported (5)\n"
    "  --threads T       decode threads of the multi-threaded DatasetReader rows (2)\n"
    "  --batch N         samples per output batch (512)\n"
    "  --block N         samples per shard block (4096)\n"
    "  --level L         zstd level of the shard (3)\n"
    "  --folder DIR      where the data files go and stay (default: a temporary folder,\n"
    "                    removed afterwards); --dir is the same\n"
    "  --only NAME       run only the rows named NAME (e.g. shard_zstd, for a profiler)\n"
    "  --json FILE       also write the results as JSON\n";

Schema census_schema() {
  Schema schema;
  for (int i = 0; i < 7; ++i) schema.dense_features.push_back("dense_" + std::to_string(i));
  for (int i = 0; i < 32; ++i) {
    schema.sparse_slots.push_back({"slot_" + std::to_string(i), kCensusVocabularies[i]});
  }
  schema.labels = {"income", "never_married"};
  return schema;
}

Batch census_batch(const Schema& schema, std::int64_t samples, std::uint32_t seed) {
  std::mt19937_64 generator(seed);
  std::uniform_real_distribution<float> value(0.0f, 1.0f);
  Batch batch = Batch::empty_for(schema);
  batch.size = samples;
  for (std::int64_t i = 0; i < samples; ++i) {
    for (int d = 0; d < 7; ++d) batch.dense.push_back(value(generator));
    batch.labels.push_back(value(generator) < 0.06f ? 1.0f : 0.0f);
    batch.labels.push_back(value(generator) < 0.4f ? 1.0f : 0.0f);
    for (int s = 0; s < 32; ++s) {
      batch.sparse[s].ids.push_back(
          static_cast<std::int64_t>(generator() % kCensusVocabularies[s]));
      batch.sparse[s].offsets.push_back(static_cast<std::int64_t>(batch.sparse[s].ids.size()));
    }
  }
  return batch;
}

std::string example_of(const Schema& schema, const Batch& batch, std::int64_t row) {
  Example example;
  for (std::size_t d = 0; d < schema.num_dense(); ++d) {
    example[schema.dense_features[d]] = Feature::of_floats({batch.dense[row * 7 + d]});
  }
  for (std::size_t s = 0; s < schema.num_sparse(); ++s) {
    example[schema.sparse_slots[s].name] = Feature::of_int64s({batch.sparse[s].ids[row]});
  }
  for (std::size_t l = 0; l < schema.num_labels(); ++l) {
    example[schema.labels[l]] = Feature::of_floats({batch.labels[row * 2 + l]});
  }
  return encode_example(example);
}

struct Measurement {
  std::int64_t samples = 0;
  std::uint64_t decompressed_bytes = 0;
  double label_sum = 0;            // correctness: must equal the written data's
  std::int64_t slot_0_id_sum = 0;  // likewise (and the TensorFlow peer prints its own)
  double open_seconds = 0;         // reader rows: wall time of the constructor (file scans)
  void add(const Batch& batch) {
    samples += batch.size;
    for (const float label : batch.labels) label_sum += label;
    for (const std::int64_t id : batch.sparse[0].ids) slot_0_id_sum += id;
  }
};

double process_cpu_seconds() {
  timespec now{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) * 1e-9;
}

double median_of(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

struct Row {
  std::string name;
  std::uint64_t file_bytes = 0;
  int threads = 1;
  std::vector<double> seconds;
  std::vector<double> cpu_seconds;  // of the whole process: every reader thread counts
  std::vector<double> open_seconds;
  Measurement measured;
  double median() const { return median_of(seconds); }
  double median_cpu() const { return median_of(cpu_seconds); }
  double median_open() const { return median_of(open_seconds); }
};

// Single thread: TfRecordReader (framing, CRC32C, decompression) and ExampleBatchDecoder into
// batches of batch_size samples.
Measurement read_tfrecord(const std::string& path, const Schema& schema, std::int64_t batch_size) {
  ExampleMapping mapping;
  mapping.schema = schema;
  ExampleBatchDecoder decoder(mapping);
  TfRecordReader reader(path);
  Measurement measured;
  Batch batch = Batch::empty_for(schema);
  std::span<const std::byte> record;
  auto flush = [&] {
    measured.add(batch);
    batch.size = 0;
    batch.dense.clear();
    batch.labels.clear();
    for (auto& column : batch.sparse) {
      column.ids.clear();
      column.offsets.assign(1, 0);
    }
  };
  while (reader.next(record)) {
    measured.decompressed_bytes += record.size() + 16;
    decoder.append(record, batch);
    if (batch.size == batch_size) flush();
  }
  flush();
  return measured;
}

// Single thread: ShardFile::read_block (read, CRC32C, zstd) straight into one batch per block.
Measurement read_shard(const std::string& path) {
  const ShardFile file(path);
  BlockDecoder decoder;
  std::vector<std::byte> scratch;
  Batch batch;
  Measurement measured;
  for (std::int64_t b = 0; b < file.num_blocks(); ++b) {
    file.read_block(b, decoder, scratch, batch);
    measured.decompressed_bytes += decoder.last_body_bytes();  // what zstd had to produce
    measured.add(batch);
  }
  return measured;
}

// The DatasetReader, as training uses it: opening (TFRecord files are scanned for offsets), decode
// threads, the assembly thread and the caller's next(). `decompressed_bytes` is the file's total
// payload after decompression, measured by the direct readers.
Measurement read_with_reader(const std::string& path, const std::optional<ExampleMapping>& mapping,
                             int threads, bool shuffle, std::int64_t batch_size,
                             std::uint64_t decompressed_bytes) {
  DatasetReaderOptions options;
  options.files = {path};
  options.example_mapping = mapping;
  options.batch_size = batch_size;
  options.decode_threads = threads;
  options.shuffle = shuffle;
  const auto open_start = std::chrono::steady_clock::now();
  DatasetReader reader(options);
  const double open_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - open_start).count();
  Measurement measured;
  Batch batch;
  while (reader.next(batch)) measured.add(batch);
  measured.decompressed_bytes = decompressed_bytes;
  measured.open_seconds = open_seconds;
  return measured;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

int parse_int(const char* text, const char* flag) {
  try {
    return std::stoi(text);
  } catch (const std::exception&) {
    throw std::invalid_argument(std::string(flag) + " needs a number, got '" + text + "'");
  }
}

int run(int argc, char** argv) {
  BenchOptions options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::printf("%s", kUsage);
      return 0;
    }
    if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value\n" + kUsage);
    const char* value = argv[++i];
    if (flag == "--samples") {
      options.samples = std::stoll(value);
    } else if (flag == "--runs") {
      options.runs = parse_int(value, "--runs");
    } else if (flag == "--threads") {
      options.threads = parse_int(value, "--threads");
    } else if (flag == "--block") {
      options.block_samples = std::stoll(value);
    } else if (flag == "--level") {
      options.zstd_level = parse_int(value, "--level");
    } else if (flag == "--batch") {
      options.batch_size = std::stoll(value);
    } else if (flag == "--folder" || flag == "--dir") {
      options.folder = value;
    } else if (flag == "--only") {
      options.only = value;
    } else if (flag == "--json") {
      options.json_path = value;
    } else {
      throw std::invalid_argument("unknown option " + flag + "\n" + kUsage);
    }
  }
  if (options.samples <= 0 || options.runs <= 0 || options.threads <= 0 ||
      options.batch_size <= 0) {
    throw std::invalid_argument("--samples, --runs, --threads and --batch must be positive");
  }

  namespace fs = std::filesystem;
  const bool own_folder = options.folder.empty();
  const fs::path folder =
      own_folder ? fs::temp_directory_path() / ("drgrad-io-bench-" + std::to_string(::getpid()))
                 : fs::path(options.folder);
  fs::create_directories(folder);

  utsname machine{};
  ::uname(&machine);
  std::printf("# io_bench: read + decode throughput, Census-shaped records\n");
  std::printf("# machine: %s, %u hardware threads, %s %s\n", cpu_model().c_str(),
              std::thread::hardware_concurrency(), machine.sysname, machine.release);
  std::printf("# crc32c: %s\n", crc32c_uses_hardware() ? "SSE4.2 instruction" : "table");
  std::printf("# compiler: %s, %s\n", kCompiler, kAssertions);
  std::printf("# records: %lld samples of 32 categorical (1 id each), 7 dense, 2 labels\n",
              static_cast<long long>(options.samples));
  std::printf("# batches of %lld samples (direct shard rows: one batch per block)\n",
              static_cast<long long>(options.batch_size));
  std::printf(
      "# shard: zstd level %d, %lld samples per block; runs: 1 warm-up + %d timed, median\n",
      options.zstd_level, static_cast<long long>(options.block_samples), options.runs);
  std::printf("# files in %s (page cache warm after the warm-up run)\n", folder.string().c_str());
  std::printf(
      "# samples/cpu_s: samples per second of process CPU time (all threads); open_s: of\n"
      "# median_s, the DatasetReader constructor (it scans TFRecord files for offsets)\n");

  const Schema schema = census_schema();
  const Batch data = census_batch(schema, options.samples, 17);
  double expected_label_sum = 0;
  for (const float label : data.labels) expected_label_sum += label;

  const std::string plain_path = (folder / "census.tfrecord").string();
  const std::string gzip_path = (folder / "census.tfrecord.gz").string();
  const std::string zstd_path = (folder / "census-zstd.drgrad").string();
  const std::string stored_path = (folder / "census-none.drgrad").string();
  std::uint64_t tfrecord_payload_bytes = 0;  // records plus their 16 framing bytes
  {
    TfRecordWriter plain(plain_path);
    TfRecordWriter gzip(gzip_path, {Compression::gzip, -1});
    for (std::int64_t row = 0; row < data.size; ++row) {
      const std::string record = example_of(schema, data, row);
      plain.write(record);
      gzip.write(record);
      tfrecord_payload_bytes += record.size() + 16;
    }
    plain.close();
    gzip.close();
    write_shard(zstd_path, schema, data,
                {shard::BlockCodec::zstd, options.zstd_level, options.block_samples});
    write_shard(stored_path, schema, data, {shard::BlockCodec::none, 0, options.block_samples});
  }
  for (const std::string& path : {plain_path, gzip_path, zstd_path, stored_path}) {
    std::printf("# file: %s\n", path.c_str());
  }
  const std::uint64_t shard_payload_bytes = read_shard(stored_path).decompressed_bytes;

  ExampleMapping mapping;
  mapping.schema = schema;
  struct Case {
    std::string name;
    std::string path;
    int threads;
    std::function<Measurement()> read;
  };
  const std::int64_t batch_size = options.batch_size;
  std::vector<Case> cases = {
      {"tfrecord_example_none", plain_path, 1,
       [&] { return read_tfrecord(plain_path, schema, batch_size); }},
      {"tfrecord_example_gzip", gzip_path, 1,
       [&] { return read_tfrecord(gzip_path, schema, batch_size); }},
      {"shard_zstd", zstd_path, 1, [&] { return read_shard(zstd_path); }},
      {"shard_none", stored_path, 1, [&] { return read_shard(stored_path); }},
  };
  // The reader rows, in file order: with one decode thread, then with --threads.
  std::vector<int> reader_threads = {1};
  if (options.threads != 1) reader_threads.push_back(options.threads);
  for (const int threads : reader_threads) {
    cases.push_back({"reader_tfrecord_none", plain_path, threads, [&, threads] {
                       return read_with_reader(plain_path, mapping, threads, false, batch_size,
                                               tfrecord_payload_bytes);
                     }});
    cases.push_back({"reader_tfrecord_gzip", gzip_path, threads, [&, threads] {
                       return read_with_reader(gzip_path, mapping, threads, false, batch_size,
                                               tfrecord_payload_bytes);
                     }});
    cases.push_back({"reader_shard_zstd", zstd_path, threads, [&, threads] {
                       return read_with_reader(zstd_path, std::nullopt, threads, false, batch_size,
                                               shard_payload_bytes);
                     }});
  }
  cases.push_back({"reader_shard_zstd_shuffled", zstd_path, options.threads, [&] {
                     return read_with_reader(zstd_path, std::nullopt, options.threads, true,
                                             batch_size, shard_payload_bytes);
                   }});

  std::int64_t expected_slot_0_id_sum = 0;
  for (const std::int64_t id : data.sparse[0].ids) expected_slot_0_id_sum += id;

  std::vector<Row> rows;
  bool all_correct = true;
  for (const Case& item : cases) {
    if (!options.only.empty() && item.name != options.only) continue;
    Row row;
    row.name = item.name;
    row.threads = item.threads;
    row.file_bytes = fs::file_size(item.path);
    item.read();  // warm-up
    for (int run = 0; run < options.runs; ++run) {
      const auto start = std::chrono::steady_clock::now();
      const double cpu_start = process_cpu_seconds();
      row.measured = item.read();
      row.cpu_seconds.push_back(process_cpu_seconds() - cpu_start);
      row.open_seconds.push_back(row.measured.open_seconds);
      row.seconds.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    if (row.measured.samples != options.samples || row.measured.label_sum != expected_label_sum ||
        row.measured.slot_0_id_sum != expected_slot_0_id_sum) {
      std::fprintf(stderr,
                   "io_bench: %s read %lld samples (label sum %.1f, slot_0 id sum %lld), expected "
                   "%lld (%.1f, %lld)\n",
                   item.name.c_str(), static_cast<long long>(row.measured.samples),
                   row.measured.label_sum, static_cast<long long>(row.measured.slot_0_id_sum),
                   static_cast<long long>(options.samples), expected_label_sum,
                   static_cast<long long>(expected_slot_0_id_sum));
      all_correct = false;
    }
    rows.push_back(row);
  }

  std::printf("%-28s %7s %9s %12s %14s %12s %10s %10s %8s\n", "format", "threads", "file_MB",
              "samples/s", "samples/cpu_s", "decomp_MB/s", "median_s", "cpu_s", "open_s");
  for (const Row& row : rows) {
    const double seconds = row.median();
    const double samples = static_cast<double>(row.measured.samples);
    std::printf("%-28s %7d %9.2f %12.0f %14.0f %12.1f %10.4f %10.4f %8.4f\n", row.name.c_str(),
                row.threads, row.file_bytes / 1e6, samples / seconds, samples / row.median_cpu(),
                row.measured.decompressed_bytes / 1e6 / seconds, seconds, row.median_cpu(),
                row.median_open());
  }
  std::printf(
      "# correctness: %s (every row read all %lld samples, label sum %.1f, slot_0 id sum %lld, "
      "as written)\n",
      all_correct ? "ok" : "FAILED", static_cast<long long>(options.samples), expected_label_sum,
      static_cast<long long>(expected_slot_0_id_sum));

  if (!options.json_path.empty()) {
    std::ofstream json(options.json_path);
    json << "{\n  \"benchmark\": \"io_bench\",\n  \"samples\": " << options.samples
         << ",\n  \"batch_size\": " << options.batch_size << ",\n  \"cpu\": \"" << cpu_model()
         << "\",\n  \"hardware_threads\": " << std::thread::hardware_concurrency()
         << ",\n  \"compiler\": \"" << kCompiler << "\",\n  \"folder\": \"" << folder.string()
         << "\",\n  \"rows\": [\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const Row& row = rows[i];
      const double seconds = row.median();
      json << "    {\"format\": \"" << row.name << "\", \"threads\": " << row.threads
           << ", \"file_bytes\": " << row.file_bytes << ", \"median_seconds\": " << seconds
           << ", \"median_cpu_seconds\": " << row.median_cpu()
           << ", \"median_open_seconds\": " << row.median_open()
           << ", \"samples_per_second\": " << row.measured.samples / seconds
           << ", \"samples_per_cpu_second\": " << row.measured.samples / row.median_cpu()
           << ", \"decompressed_mb_per_second\": "
           << row.measured.decompressed_bytes / 1e6 / seconds << "}"
           << (i + 1 < rows.size() ? "," : "") << "\n";
    }
    json << "  ],\n  \"correct\": " << (all_correct ? "true" : "false") << "\n}\n";
  }
  if (own_folder) fs::remove_all(folder);
  return all_correct ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "io_bench: %s\n", error.what());
    return 2;
  }
}
