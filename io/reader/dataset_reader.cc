// DatasetReader: a plan of work units per epoch (deterministic from the seed), decode threads that
// fill numbered result slots, and a consumer that takes the slots strictly in plan order, so the
// output never depends on which thread finished first.
#include "io/reader/dataset_reader.h"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "io/example/example.h"
#include "io/shard/shard_file.h"
#include "io/shard/shard_format.h"
#include "io/tfrecord/tfrecord_format.h"
#include "io/tfrecord/tfrecord_reader.h"
#include "io/util/crc32c.h"
#include "io/util/errors.h"
#include "io/util/little_endian.h"

namespace drgrad::io {

namespace {

// splitmix64: a tiny, well-mixed generator whose output is identical on every platform (the
// standard distributions are not), so shuffles are reproducible everywhere.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound), without modulo bias: reject the short top range, then reduce.
  std::uint64_t below(std::uint64_t bound) {
    const std::uint64_t threshold = (0 - bound) % bound;
    while (true) {
      const std::uint64_t value = next();
      if (value >= threshold) return value % bound;
    }
  }

 private:
  std::uint64_t state_;
};

std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  SplitMix64 generator(seed ^ (a * 0x9e3779b97f4a7c15ULL));
  generator.next();
  SplitMix64 second(generator.next() ^ (b * 0xc2b2ae3d27d4eb4fULL) ^ (c * 0x165667b19e3779f9ULL));
  return second.next();
}

template <typename T>
void shuffle_in_place(std::vector<T>& values, std::uint64_t seed) {
  SplitMix64 generator(seed);
  for (std::size_t i = values.size(); i > 1; --i) {
    const std::size_t j = static_cast<std::size_t>(generator.below(i));
    std::swap(values[i - 1], values[j]);
  }
}

enum class UnitKind { shard_block, tfrecord_range };

// Empties `batch` for `schema`, keeping its buffers' capacity.
void clear_batch(Batch& batch, const Schema& schema) {
  batch.size = 0;
  batch.dense.clear();
  batch.labels.clear();
  batch.sparse.resize(schema.num_sparse());
  for (auto& column : batch.sparse) {
    column.ids.clear();
    column.offsets.assign(1, 0);
  }
}

struct WorkUnit {
  UnitKind kind;
  std::size_t file;               // index into the reader's file list
  std::int64_t block = 0;         // shard block
  std::int64_t first_record = 0;  // TFRecord: first record index
  std::int64_t record_count = 0;  // TFRecord: records in the unit
  std::uint64_t byte_offset = 0;  // TFRecord: offset of the first record (uncompressed only)
  std::int64_t samples = 0;       // expected samples (before skipping damage)
};

struct UnitResult {
  Batch batch;
  std::int64_t skipped = 0;
  std::exception_ptr error;
};

DataFormat detect_format(const std::string& path) {
  FileSource source(path);
  std::byte prefix[tfrecord::kHeaderBytes + sizeof(shard::kHeaderMagic)];
  const std::size_t got = source.read(prefix, sizeof(prefix));
  if (got == sizeof(prefix) &&
      load_le<std::uint32_t>(prefix + tfrecord::kLengthBytes) ==
          mask_crc32c(crc32c(prefix, tfrecord::kLengthBytes)) &&
      std::memcmp(prefix + tfrecord::kHeaderBytes, shard::kHeaderMagic,
                  sizeof(shard::kHeaderMagic)) == 0) {
    return DataFormat::shard;
  }
  return DataFormat::tfrecord;
}

}  // namespace

// ---- ReaderPosition ----

std::string ReaderPosition::serialize() const {
  std::ostringstream out;
  out << "drgrad-reader-position v1 epoch=" << epoch << " window=" << window
      << " sample=" << sample_in_window << " plan=" << plan_fingerprint;
  return out.str();
}

ReaderPosition ReaderPosition::deserialize(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::string magic, version, epoch_field, window_field, sample_field, plan_field;
  in >> magic >> version >> epoch_field >> window_field >> sample_field >> plan_field;
  auto value_of = [&](const std::string& field, const char* key) -> std::string {
    const std::string prefix = std::string(key) + "=";
    if (field.rfind(prefix, 0) != 0) {
      throw std::invalid_argument("reader position '" + std::string(text) + "' lacks " + prefix +
                                  "; it was not written by ReaderPosition::serialize");
    }
    return field.substr(prefix.size());
  };
  if (magic != "drgrad-reader-position" || version != "v1") {
    throw std::invalid_argument("reader position '" + std::string(text) +
                                "' is not a drgrad v1 reader position");
  }
  ReaderPosition position;
  try {
    position.epoch = std::stoll(value_of(epoch_field, "epoch"));
    position.window = std::stoll(value_of(window_field, "window"));
    position.sample_in_window = std::stoll(value_of(sample_field, "sample"));
    position.plan_fingerprint = std::stoull(value_of(plan_field, "plan"));
  } catch (const std::logic_error& error) {
    if (dynamic_cast<const std::invalid_argument*>(&error) &&
        std::string(error.what()).find("reader position") != std::string::npos) {
      throw;
    }
    throw std::invalid_argument("reader position '" + std::string(text) +
                                "' has a malformed number");
  }
  if (position.epoch < 0 || position.window < 0 || position.sample_in_window < 0) {
    throw std::invalid_argument("reader position '" + std::string(text) + "' is negative");
  }
  return position;
}

// ---- DatasetReader ----

struct DatasetReader::Impl {
  DatasetReaderOptions options;
  Schema schema;
  std::vector<DataFormat> formats;                 // per file
  std::vector<std::unique_ptr<ShardFile>> shards;  // per file (null for TFRecord)
  std::vector<Compression> compressions;           // per file (TFRecord)
  std::vector<WorkUnit> units;                     // this rank's units, in file order
  std::int64_t samples_per_epoch = 0;
  std::uint64_t plan_fingerprint = 0;
  std::int64_t skipped_at_open = 0;

  // Pipeline state, guarded by mutex.
  mutable std::mutex mutex;
  std::condition_variable work_available;
  std::condition_variable result_ready;
  std::map<std::int64_t, UnitResult> results;
  std::vector<Batch> spare_units;  // spent unit batches, reused by the workers
  std::int64_t next_dispatch = 0;  // global sequence number (epoch * units + k)
  std::int64_t next_consume = 0;
  std::int64_t end_sequence = 0;
  bool stopping = false;
  std::int64_t skipped_in_decode = 0;
  std::vector<std::thread> workers;
  // After a failed window the workers stay stopped until the next attempt, so that a retry decodes
  // afresh (the caller may have repaired the file) instead of reusing stale prefetched results.
  std::optional<std::int64_t> restart_at;
  // Epoch plans, cached (workers and consumer ask for the same few epochs).
  std::map<std::int64_t, std::vector<std::size_t>> plans;

  // Consumer state (touched only by the consumer thread).
  std::int64_t epoch = 0;
  std::int64_t window = 0;  // the window `window_units` hold (when window_loaded)
  std::int64_t cursor = 0;  // next entry of window_order to hand out
  bool window_loaded = false;
  // The window's samples stay in their unit batches (no concatenation copy); window row r is
  // row r - window_unit_start[u] of unit u, the last u with window_unit_start[u] <= r.
  std::vector<Batch> window_units;
  std::vector<std::int64_t> window_unit_start;
  std::int64_t window_samples = 0;
  std::vector<std::int64_t> window_order;
  std::vector<std::pair<std::size_t, std::int64_t>> located;  // scratch for append_rows
  bool finished = false;

  // Assembly: one thread turns windows into output batches (the shuffled gather is the costly
  // part) up to kBatchesAhead ahead of the caller. The window state above belongs to it while it
  // runs; restore() stops it before touching that state.
  static constexpr std::size_t kBatchesAhead = 2;
  struct Assembled {
    Batch batch;
    bool end = false;
    std::exception_ptr error;
    ReaderPosition after;  // the reader's position once this batch is handed out
    std::int64_t epoch = 0;
  };
  std::thread assembler;
  std::mutex output_mutex;
  std::condition_variable output_changed;
  std::deque<Assembled> output;
  std::vector<Batch> spare_batches;  // buffers handed back by the caller, reused
  bool assembler_stopping = false;
  bool assembler_paused = false;  // after an error, until the caller asks again
  // Caller-side view (touched only by the caller's thread).
  ReaderPosition caller_position;
  std::int64_t caller_epoch = 0;

  std::int64_t units_per_epoch() const { return static_cast<std::int64_t>(units.size()); }
  std::int64_t windows_per_epoch() const {
    const std::int64_t w = options.shuffle_window_units;
    return (units_per_epoch() + w - 1) / w;
  }

  void open_files();
  void build_units();
  const std::vector<std::size_t>& plan_for(std::int64_t epoch_number);  // needs mutex held
  // Decodes one unit into `recycled` (a spent batch whose buffers are reused, or empty).
  UnitResult decode_unit(const WorkUnit& unit, BlockDecoder& block_decoder,
                         std::vector<std::byte>& scratch,
                         std::optional<ExampleBatchDecoder>& example_decoder, Batch recycled) const;
  void worker_loop();
  void start_workers(std::int64_t first_sequence);
  void stop_workers();
  UnitResult take_result(std::int64_t sequence);
  void load_window(std::int64_t epoch_number, std::int64_t window_number);
  // Appends window rows window_order[cursor, cursor + count) to `out`.
  void append_rows(Batch& out, std::int64_t count);
  // Appends window rows row, row + 1, ..., row + count - 1 (unshuffled order) as ranges.
  void append_consecutive_rows(Batch& out, std::int64_t row, std::int64_t count);
};

void DatasetReader::Impl::open_files() {
  if (options.files.empty()) {
    throw std::invalid_argument(
        "DatasetReader: no input files; give at least one shard or "
        "TFRecord file");
  }
  std::optional<Schema> chosen = options.expected_schema;
  if (options.example_mapping) {
    if (chosen && chosen->fingerprint() != options.example_mapping->schema.fingerprint()) {
      throw std::invalid_argument(
          "DatasetReader: expected_schema and example_mapping.schema "
          "differ; they must describe the same output");
    }
    chosen = options.example_mapping->schema;
  }
  formats.resize(options.files.size());
  shards.resize(options.files.size());
  compressions.assign(options.files.size(), options.tfrecord_compression);
  for (std::size_t i = 0; i < options.files.size(); ++i) {
    const std::string& path = options.files[i];
    formats[i] = options.format == DataFormat::detect ? detect_format(path) : options.format;
    if (formats[i] == DataFormat::shard) {
      ShardOpenOptions open_options;
      open_options.expected_schema = chosen;
      open_options.skip_corrupt = options.skip_corrupt;
      shards[i] = std::make_unique<ShardFile>(path, open_options);
      skipped_at_open += shards[i]->corrupt_records_skipped();
      if (!chosen) chosen = shards[i]->schema();
    } else if (!options.example_mapping) {
      if (std::filesystem::file_size(path) == 0) {
        throw CorruptRecordError(RecordLocation{path, 0, 0, false},
                                 "the file is empty (neither a shard nor TFRecord data)",
                                 "the writer probably crashed before writing anything; re-create "
                                 "the file or leave it out");
      }
      throw std::invalid_argument("DatasetReader: '" + path +
                                  "' is a TFRecord file; give example_mapping to say which "
                                  "Example features are dense, sparse and labels");
    }
  }
  schema = *chosen;
}

void DatasetReader::Impl::build_units() {
  std::vector<WorkUnit> all;
  for (std::size_t i = 0; i < options.files.size(); ++i) {
    if (formats[i] == DataFormat::shard) {
      const ShardFile& file = *shards[i];
      for (std::int64_t b = 0; b < file.num_blocks(); ++b) {
        WorkUnit unit{UnitKind::shard_block, i};
        unit.block = b;
        unit.samples = static_cast<std::int64_t>(file.blocks()[b].samples);
        all.push_back(unit);
      }
      continue;
    }
    // TFRecord: one scan for record offsets (length checksums only).
    TfRecordReaderOptions scan_options;
    scan_options.compression = options.tfrecord_compression;
    scan_options.skip_corrupt = options.skip_corrupt;
    TfRecordReader scanner(options.files[i], scan_options);
    compressions[i] = scanner.compression();
    if (scanner.compression() != Compression::none) {
      // A compressed stream cannot be entered in the middle, so the whole file is one unit and
      // needs no record offsets: its records are counted when it is decoded, instead of
      // inflating the file an extra time here (about a quarter of a GZIP epoch).
      WorkUnit whole{UnitKind::tfrecord_range, i};
      whole.record_count = std::numeric_limits<std::int64_t>::max();
      whole.samples = -1;
      all.push_back(whole);
      continue;
    }
    const bool splittable = !options.tfrecord_split_by_file;
    const std::int64_t per_unit =
        splittable ? options.tfrecord_records_per_unit : std::numeric_limits<std::int64_t>::max();
    WorkUnit current{UnitKind::tfrecord_range, i};
    current.byte_offset = scanner.byte_offset();
    while (scanner.skip()) {
      ++current.record_count;
      if (current.record_count == per_unit) {
        current.samples = current.record_count;
        all.push_back(current);
        current = WorkUnit{UnitKind::tfrecord_range, i};
        current.first_record = scanner.record_index();
        current.byte_offset = scanner.byte_offset();
      }
    }
    if (current.record_count > 0) {
      current.samples = current.record_count;
      all.push_back(current);
    }
    skipped_at_open += scanner.corrupt_records_skipped();
  }
  // Round-robin split among ranks.
  std::uint64_t fingerprint = 0x6472677264617461ULL;  // "drgrdata"
  auto mix = [&](std::uint64_t value) { fingerprint = mix_seed(fingerprint, value, 1, 2); };
  mix(all.size());
  for (std::size_t u = 0; u < all.size(); ++u) {
    mix(static_cast<std::uint64_t>(all[u].samples));
    if (all[u].samples < 0) mix(std::filesystem::file_size(options.files[all[u].file]));
    if (static_cast<int>(u % static_cast<std::size_t>(options.num_ranks)) == options.rank) {
      units.push_back(all[u]);
      // Unknown (-1) as soon as one unit's count is only learned by reading it.
      samples_per_epoch =
          samples_per_epoch < 0 || all[u].samples < 0 ? -1 : samples_per_epoch + all[u].samples;
    }
  }
  // File names without folders: a position stays valid when the data set is moved.
  for (const auto& path : options.files) {
    const auto slash = path.find_last_of('/');
    for (const char c : path.substr(slash == std::string::npos ? 0 : slash + 1)) {
      mix(static_cast<unsigned char>(c));
    }
  }
  mix(options.seed);
  mix(options.shuffle ? 1 : 0);
  mix(static_cast<std::uint64_t>(options.shuffle_window_units));
  mix(static_cast<std::uint64_t>(options.rank));
  mix(static_cast<std::uint64_t>(options.num_ranks));
  mix(options.tfrecord_split_by_file ? 1 : 0);
  mix(schema.fingerprint());
  plan_fingerprint = fingerprint;
}

const std::vector<std::size_t>& DatasetReader::Impl::plan_for(std::int64_t epoch_number) {
  auto found = plans.find(epoch_number);
  if (found != plans.end()) return found->second;
  if (plans.size() > 4) plans.erase(plans.begin());
  std::vector<std::size_t> order(units.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  if (options.shuffle) {
    shuffle_in_place(order, mix_seed(options.seed, static_cast<std::uint64_t>(epoch_number), 0,
                                     0x756e697473ULL));
  }
  return plans.emplace(epoch_number, std::move(order)).first->second;
}

UnitResult DatasetReader::Impl::decode_unit(const WorkUnit& unit, BlockDecoder& block_decoder,
                                            std::vector<std::byte>& scratch,
                                            std::optional<ExampleBatchDecoder>& example_decoder,
                                            Batch recycled) const {
  UnitResult result;
  result.batch = std::move(recycled);
  clear_batch(result.batch, schema);
  if (unit.kind == UnitKind::shard_block) {
    try {
      shards[unit.file]->read_block(unit.block, block_decoder, scratch, result.batch);
    } catch (const CorruptRecordError&) {
      if (!options.skip_corrupt) throw;
      result.batch = Batch::empty_for(schema);
      result.skipped = 1;
    }
    return result;
  }
  const std::string& path = options.files[unit.file];
  TfRecordReaderOptions reader_options;
  reader_options.compression = compressions[unit.file];
  reader_options.skip_corrupt = options.skip_corrupt;
  TfRecordReader reader(path, reader_options);
  if (unit.first_record > 0 && !reader.seek(unit.byte_offset, unit.first_record)) {
    throw std::logic_error("DatasetReader: cannot seek in '" + path + "'");
  }
  if (!example_decoder) example_decoder.emplace(*options.example_mapping);
  const std::int64_t end_record = unit.first_record + unit.record_count;
  std::span<const std::byte> record;
  while (reader.record_index() < end_record) {
    const std::int64_t index = reader.record_index();
    const std::uint64_t offset = reader.byte_offset();
    const auto step = reader.read(record);
    if (step == TfRecordReader::Step::end) break;
    if (step == TfRecordReader::Step::skipped) continue;
    try {
      example_decoder->append(record, result.batch);
    } catch (const ExampleParseError& error) {
      if (options.skip_corrupt) {
        ++result.skipped;
        continue;
      }
      throw CorruptRecordError(
          RecordLocation{path, index, static_cast<std::int64_t>(offset),
                         compressions[unit.file] != Compression::none},
          std::string("the record is not a valid tf.train.Example: ") + error.what(),
          kAdviceCorrupt);
    } catch (const ExampleMappingError& error) {
      throw SchemaMismatchError(
          RecordLocation{path, index, static_cast<std::int64_t>(offset),
                         compressions[unit.file] != Compression::none},
          error.what(), "fix the example mapping (feature names and kinds) to match the data");
    }
  }
  result.skipped += reader.corrupt_records_skipped();
  return result;
}

void DatasetReader::Impl::worker_loop() {
  BlockDecoder block_decoder;
  std::vector<std::byte> scratch;
  std::optional<ExampleBatchDecoder> example_decoder;
  std::unique_lock<std::mutex> lock(mutex);
  while (true) {
    work_available.wait(lock, [&] {
      return stopping || (next_dispatch < end_sequence &&
                          next_dispatch - next_consume < options.prefetch_units);
    });
    if (stopping) return;
    const std::int64_t sequence = next_dispatch++;
    const std::int64_t per_epoch = units_per_epoch();
    const WorkUnit unit =
        units[plan_for(sequence / per_epoch)[static_cast<std::size_t>(sequence % per_epoch)]];
    Batch recycled;
    if (!spare_units.empty()) {
      recycled = std::move(spare_units.back());
      spare_units.pop_back();
    }
    lock.unlock();
    UnitResult result;
    try {
      result = decode_unit(unit, block_decoder, scratch, example_decoder, std::move(recycled));
    } catch (...) {
      result = UnitResult{};
      result.error = std::current_exception();
    }
    lock.lock();
    if (stopping) return;
    results.emplace(sequence, std::move(result));
    result_ready.notify_all();
  }
}

void DatasetReader::Impl::start_workers(std::int64_t first_sequence) {
  {
    std::lock_guard<std::mutex> lock(mutex);
    results.clear();
    stopping = false;
    next_dispatch = next_consume = first_sequence;
  }
  for (int t = 0; t < options.decode_threads; ++t) workers.emplace_back([this] { worker_loop(); });
}

void DatasetReader::Impl::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
  }
  work_available.notify_all();
  for (auto& worker : workers) worker.join();
  workers.clear();
  results.clear();
}

UnitResult DatasetReader::Impl::take_result(std::int64_t sequence) {
  std::unique_lock<std::mutex> lock(mutex);
  if (sequence != next_consume) {
    throw std::logic_error("DatasetReader: units consumed out of order");
  }
  result_ready.wait(lock, [&] { return results.count(sequence) > 0; });
  auto node = results.extract(sequence);
  if (node.mapped().error) {
    // load_window restarts the pipeline at the window's start, so a retry decodes it again.
    std::rethrow_exception(node.mapped().error);
  }
  ++next_consume;
  skipped_in_decode += node.mapped().skipped;
  lock.unlock();
  work_available.notify_all();
  return std::move(node.mapped());
}

void DatasetReader::Impl::append_rows(Batch& out, std::int64_t count) {
  if (!options.shuffle) {
    // In order, the rows are consecutive: copy them as one range per unit and column.
    append_consecutive_rows(out, window_order[static_cast<std::size_t>(cursor)], count);
    return;
  }
  located.resize(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) {
    const std::int64_t row = window_order[static_cast<std::size_t>(cursor + i)];
    const auto unit = static_cast<std::size_t>(
        std::upper_bound(window_unit_start.begin(), window_unit_start.end(), row) -
        window_unit_start.begin() - 1);
    located[static_cast<std::size_t>(i)] = {unit, row - window_unit_start[unit]};
  }
  const std::size_t num_dense = schema.num_dense();
  const std::size_t num_labels = schema.num_labels();
  for (const auto& [unit, row] : located) {
    const Batch& source = window_units[unit];
    const auto r = static_cast<std::size_t>(row);
    out.dense.insert(out.dense.end(), source.dense.begin() + r * num_dense,
                     source.dense.begin() + (r + 1) * num_dense);
    out.labels.insert(out.labels.end(), source.labels.begin() + r * num_labels,
                      source.labels.begin() + (r + 1) * num_labels);
  }
  // Shuffled rows are random accesses into the window: prefetch each row's offsets 16 rows ahead
  // and, once those are in cache, its ids 8 rows ahead (the ids' address depends on the offsets).
  constexpr std::size_t kOffsetsAhead = 16;
  constexpr std::size_t kIdsAhead = 8;
  for (std::size_t slot = 0; slot < out.sparse.size(); ++slot) {
    SparseColumn& column = out.sparse[slot];
    auto offsets_of = [&](std::size_t i) -> const std::int64_t* {
      const auto& [unit, row] = located[i];
      return window_units[unit].sparse[slot].offsets.data() + row;
    };
    for (std::size_t i = 0; i < kOffsetsAhead && i < located.size(); ++i) {
      __builtin_prefetch(offsets_of(i));
    }
    for (std::size_t i = 0; i < located.size(); ++i) {
      if (i + kOffsetsAhead < located.size()) __builtin_prefetch(offsets_of(i + kOffsetsAhead));
      if (i + kIdsAhead < located.size()) {
        const std::size_t ahead = i + kIdsAhead;
        __builtin_prefetch(window_units[located[ahead].first].sparse[slot].ids.data() +
                           *offsets_of(ahead));
      }
      const auto& [unit, row] = located[i];
      const SparseColumn& source = window_units[unit].sparse[slot];
      const auto begin = source.offsets[static_cast<std::size_t>(row)];
      const auto end = source.offsets[static_cast<std::size_t>(row) + 1];
      if (end - begin == 1) {
        column.ids.push_back(source.ids[static_cast<std::size_t>(begin)]);
      } else {
        column.ids.insert(column.ids.end(), source.ids.begin() + begin, source.ids.begin() + end);
      }
      column.offsets.push_back(static_cast<std::int64_t>(column.ids.size()));
    }
  }
  out.size += count;
}

void DatasetReader::Impl::append_consecutive_rows(Batch& out, std::int64_t row,
                                                  std::int64_t count) {
  const std::size_t num_dense = schema.num_dense();
  const std::size_t num_labels = schema.num_labels();
  while (count > 0) {
    const auto unit = static_cast<std::size_t>(
        std::upper_bound(window_unit_start.begin(), window_unit_start.end(), row) -
        window_unit_start.begin() - 1);
    const Batch& source = window_units[unit];
    const auto local = static_cast<std::size_t>(row - window_unit_start[unit]);
    const auto take = static_cast<std::size_t>(std::min<std::int64_t>(count, source.size - local));
    out.dense.insert(out.dense.end(), source.dense.begin() + local * num_dense,
                     source.dense.begin() + (local + take) * num_dense);
    out.labels.insert(out.labels.end(), source.labels.begin() + local * num_labels,
                      source.labels.begin() + (local + take) * num_labels);
    for (std::size_t slot = 0; slot < out.sparse.size(); ++slot) {
      const SparseColumn& from = source.sparse[slot];
      SparseColumn& to = out.sparse[slot];
      const std::int64_t first = from.offsets[local];
      const std::int64_t shift = static_cast<std::int64_t>(to.ids.size()) - first;
      to.ids.insert(to.ids.end(), from.ids.begin() + first,
                    from.ids.begin() + from.offsets[local + take]);
      for (std::size_t k = 1; k <= take; ++k) to.offsets.push_back(from.offsets[local + k] + shift);
    }
    out.size += static_cast<std::int64_t>(take);
    row += static_cast<std::int64_t>(take);
    count -= static_cast<std::int64_t>(take);
  }
}

void DatasetReader::Impl::load_window(std::int64_t epoch_number, std::int64_t window_number) {
  const std::int64_t per_epoch = units_per_epoch();
  const std::int64_t first = window_number * options.shuffle_window_units;
  const std::int64_t last = std::min(per_epoch, first + options.shuffle_window_units);
  if (restart_at) {
    start_workers(*restart_at);
    restart_at.reset();
  }
  std::vector<Batch> loaded;
  try {
    for (std::int64_t k = first; k < last; ++k) {
      UnitResult result = take_result(epoch_number * per_epoch + k);
      if (result.batch.size > 0) loaded.push_back(std::move(result.batch));
    }
  } catch (...) {
    // Rewind the pipeline to this window so that calling next() again retries it.
    stop_workers();
    restart_at = epoch_number * per_epoch + first;
    throw;
  }
  {
    // Hand the spent window's buffers to the workers: decoding into them avoids allocating (and
    // page-faulting) megabytes per unit.
    std::lock_guard<std::mutex> lock(mutex);
    for (Batch& spent : window_units) {
      if (spare_units.size() < static_cast<std::size_t>(options.prefetch_units)) {
        spare_units.push_back(std::move(spent));
      }
    }
  }
  window_units = std::move(loaded);
  window_unit_start.clear();
  window_samples = 0;
  for (const Batch& unit : window_units) {
    window_unit_start.push_back(window_samples);
    window_samples += unit.size;
  }
  window_order.resize(static_cast<std::size_t>(window_samples));
  std::iota(window_order.begin(), window_order.end(), std::int64_t{0});
  if (options.shuffle) {
    shuffle_in_place(window_order,
                     mix_seed(options.seed, static_cast<std::uint64_t>(epoch_number),
                              static_cast<std::uint64_t>(window_number) + 1, 0x73616d706c6573ULL));
  }
  epoch = epoch_number;
  window = window_number;
  cursor = 0;
  window_loaded = true;
}

DatasetReader::DatasetReader(DatasetReaderOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& impl = *impl_;
  if (options.batch_size <= 0) {
    throw std::invalid_argument("DatasetReader: batch_size must be positive");
  }
  if (options.num_ranks <= 0 || options.rank < 0 || options.rank >= options.num_ranks) {
    throw std::invalid_argument("DatasetReader: rank " + std::to_string(options.rank) +
                                " is not in [0, num_ranks=" + std::to_string(options.num_ranks) +
                                ")");
  }
  if (options.decode_threads <= 0 || options.prefetch_units <= 0 ||
      options.shuffle_window_units <= 0 || options.tfrecord_records_per_unit <= 0 ||
      options.num_epochs < 0) {
    throw std::invalid_argument(
        "DatasetReader: decode_threads, prefetch_units, "
        "shuffle_window_units and tfrecord_records_per_unit must be "
        "positive, num_epochs non-negative");
  }
  if (options.prefetch_units < options.shuffle_window_units) {
    // The consumer takes a whole window before handing out samples: let the queue hold it.
    options.prefetch_units = static_cast<int>(options.shuffle_window_units);
  }
  impl.options = std::move(options);
  impl.open_files();
  impl.build_units();
  const std::int64_t per_epoch = impl.units_per_epoch();
  impl.end_sequence = per_epoch == 0                 ? 0
                      : impl.options.num_epochs == 0 ? std::numeric_limits<std::int64_t>::max()
                                                     : impl.options.num_epochs * per_epoch;
  impl.start_workers(0);
  impl.caller_position = compute_position();
  start_assembler();
}

DatasetReader::~DatasetReader() {
  stop_assembler();
  impl_->stop_workers();
}

void DatasetReader::assembler_loop() {
  Impl& impl = *impl_;
  while (true) {
    Batch batch;
    {
      std::unique_lock<std::mutex> lock(impl.output_mutex);
      impl.output_changed.wait(lock, [&] {
        return impl.assembler_stopping ||
               (!impl.assembler_paused && impl.output.size() < Impl::kBatchesAhead);
      });
      if (impl.assembler_stopping) return;
      if (!impl.spare_batches.empty()) {
        batch = std::move(impl.spare_batches.back());
        impl.spare_batches.pop_back();
      }
    }
    Impl::Assembled item;
    try {
      item.end = !produce(batch);
    } catch (...) {
      item.error = std::current_exception();
    }
    item.batch = std::move(batch);
    item.after = compute_position();
    item.epoch = impl.epoch;
    const bool end = item.end;
    {
      std::lock_guard<std::mutex> lock(impl.output_mutex);
      if (item.error) impl.assembler_paused = true;
      impl.output.push_back(std::move(item));
    }
    impl.output_changed.notify_all();
    if (end) return;
  }
}

void DatasetReader::start_assembler() {
  Impl& impl = *impl_;
  {
    std::lock_guard<std::mutex> lock(impl.output_mutex);
    impl.output.clear();
    impl.assembler_stopping = false;
    impl.assembler_paused = false;
  }
  impl.assembler = std::thread([this] { assembler_loop(); });
}

void DatasetReader::stop_assembler() {
  Impl& impl = *impl_;
  {
    std::lock_guard<std::mutex> lock(impl.output_mutex);
    impl.assembler_stopping = true;
  }
  impl.output_changed.notify_all();
  if (impl.assembler.joinable()) impl.assembler.join();
}

bool DatasetReader::next(Batch& batch) {
  Impl& impl = *impl_;
  std::unique_lock<std::mutex> lock(impl.output_mutex);
  if (impl.assembler_paused && impl.output.empty()) {
    // The caller asks again after an error: retry.
    impl.assembler_paused = false;
    impl.output_changed.notify_all();
  }
  impl.output_changed.wait(lock, [&] { return !impl.output.empty(); });
  Impl::Assembled& front = impl.output.front();
  if (front.end) {  // stays queued: every later call also ends
    impl.caller_position = front.after;
    impl.caller_epoch = front.epoch;
    return false;
  }
  if (front.error) {
    const std::exception_ptr error = front.error;
    impl.output.pop_front();
    std::rethrow_exception(error);
  }
  std::swap(batch, front.batch);
  impl.spare_batches.push_back(std::move(front.batch));
  impl.caller_position = front.after;
  impl.caller_epoch = front.epoch;
  impl.output.pop_front();
  lock.unlock();
  impl.output_changed.notify_all();
  return true;
}

ReaderPosition DatasetReader::position() const {
  return impl_->caller_position;
}

bool DatasetReader::produce(Batch& batch) {
  Impl& impl = *impl_;
  // A failure while loading the next window must not lose the rows this batch already took from
  // the current one: put the cursor back, so a retry returns exactly the batch it would have.
  const std::int64_t epoch = impl.epoch, window = impl.window, cursor = impl.cursor;
  const bool window_loaded = impl.window_loaded, finished = impl.finished;
  try {
    return produce_unguarded(batch);
  } catch (...) {
    impl.epoch = epoch;
    impl.window = window;
    impl.cursor = cursor;
    impl.window_loaded = window_loaded;
    impl.finished = finished;
    throw;
  }
}

bool DatasetReader::produce_unguarded(Batch& batch) {
  Impl& impl = *impl_;
  // Empty the caller's batch but keep its buffers: no allocation per batch in steady state.
  auto reset = [&] {
    batch.size = 0;
    batch.dense.clear();
    batch.labels.clear();
    batch.sparse.resize(impl.schema.num_sparse());
    for (auto& column : batch.sparse) {
      column.ids.clear();
      column.offsets.assign(1, 0);
    }
  };
  reset();
  const std::int64_t epochs = impl.options.num_epochs;
  while (batch.size < impl.options.batch_size) {
    if (impl.finished) return false;
    if (!impl.window_loaded || impl.cursor == impl.window_samples) {
      std::int64_t next_epoch = impl.epoch;
      std::int64_t next_window = impl.window_loaded ? impl.window + 1 : impl.window;
      if (next_window >= impl.windows_per_epoch()) {
        // End of the epoch: hand out what we have (a batch never spans epochs).
        if (batch.size > 0 && !impl.options.drop_remainder) {
          impl.window_loaded = true;
          impl.window = impl.windows_per_epoch();
          impl.cursor = impl.window_samples;
          return true;
        }
        reset();
        next_epoch = impl.epoch + 1;
        next_window = 0;
        if ((epochs != 0 && next_epoch >= epochs) || impl.units_per_epoch() == 0) {
          impl.finished = true;
          impl.epoch = next_epoch;
          impl.window = 0;
          impl.cursor = 0;
          impl.window_loaded = false;
          return false;
        }
      }
      impl.load_window(next_epoch, next_window);
      continue;
    }
    const std::int64_t take =
        std::min(impl.options.batch_size - batch.size, impl.window_samples - impl.cursor);
    impl.append_rows(batch, take);
    impl.cursor += take;
  }
  return true;
}

ReaderPosition DatasetReader::compute_position() const {
  const Impl& impl = *impl_;
  ReaderPosition position;
  position.plan_fingerprint = impl.plan_fingerprint;
  position.epoch = impl.epoch;
  if (!impl.window_loaded) {
    position.window = impl.window;
    position.sample_in_window = 0;
  } else if (impl.cursor == impl.window_samples) {
    // The window is used up: the next sample is the start of the following window (which may
    // be the first window of the next epoch).
    if (impl.window + 1 >= impl.windows_per_epoch()) {
      position.epoch = impl.epoch + 1;
      position.window = 0;
    } else {
      position.window = impl.window + 1;
    }
    position.sample_in_window = 0;
  } else {
    position.window = impl.window;
    position.sample_in_window = impl.cursor;
  }
  return position;
}

void DatasetReader::restore(const ReaderPosition& position) {
  Impl& impl = *impl_;
  // Checks first: a refused position leaves the reader exactly as it was.
  if (position.plan_fingerprint != impl.plan_fingerprint) {
    throw std::invalid_argument(
        "DatasetReader::restore: the position was saved by a reader with other files, split, "
        "seed or shuffle settings (plan " +
        std::to_string(position.plan_fingerprint) + ", this reader's plan " +
        std::to_string(impl.plan_fingerprint) + "); restore with the same reader options");
  }
  if (position.window > impl.windows_per_epoch()) {
    throw std::invalid_argument("DatasetReader::restore: window " +
                                std::to_string(position.window) + " does not exist");
  }
  ReaderPosition normalized = position;
  if (normalized.window == impl.windows_per_epoch() && impl.windows_per_epoch() > 0) {
    normalized.epoch += 1;
    normalized.window = 0;
    normalized.sample_in_window = 0;
  }
  stop_assembler();
  // Whatever happens below, leave an assembler running so that next() never waits forever.
  struct Restart {
    DatasetReader* reader;
    ~Restart() {
      reader->impl_->caller_position = reader->compute_position();
      reader->impl_->caller_epoch = reader->impl_->epoch;
      reader->start_assembler();
    }
  } restart{this};
  restore_normalized(normalized);
}

void DatasetReader::restore_normalized(const ReaderPosition& position) {
  Impl& impl = *impl_;
  impl.stop_workers();
  impl.restart_at.reset();
  impl.finished = false;
  impl.window_loaded = false;
  impl.epoch = position.epoch;
  impl.window = position.window;
  impl.cursor = 0;
  const bool past_end = impl.options.num_epochs != 0 && position.epoch >= impl.options.num_epochs;
  const std::int64_t first_sequence = past_end
                                          ? impl.end_sequence
                                          : position.epoch * impl.units_per_epoch() +
                                                position.window * impl.options.shuffle_window_units;
  impl.start_workers(std::min(first_sequence, impl.end_sequence));
  if (past_end || impl.units_per_epoch() == 0) {
    impl.finished = true;
    return;
  }
  impl.load_window(position.epoch, position.window);
  if (position.sample_in_window > impl.window_samples) {
    throw std::invalid_argument("DatasetReader::restore: the window holds " +
                                std::to_string(impl.window_samples) +
                                " samples, the position "
                                "says sample " +
                                std::to_string(position.sample_in_window));
  }
  impl.cursor = position.sample_in_window;
}

const Schema& DatasetReader::schema() const {
  return impl_->schema;
}
std::int64_t DatasetReader::epoch() const {
  return impl_->caller_epoch;
}
std::int64_t DatasetReader::samples_per_epoch() const {
  return impl_->samples_per_epoch;
}
std::int64_t DatasetReader::units_per_epoch() const {
  return impl_->units_per_epoch();
}
std::int64_t DatasetReader::corrupt_records_skipped() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->skipped_at_open + impl_->skipped_in_decode;
}

}  // namespace drgrad::io
