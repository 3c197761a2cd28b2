// The streaming training-data reader: drgrad shards or TFRecord/Example files in, io::Batch of a
// fixed size out. Decode threads and a bounded prefetch queue keep memory bounded (data larger
// than memory streams through); shuffling, rank splitting and epochs are deterministic for a
// given seed, independent of thread timing, and the position can be saved and restored exactly.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "io/data/batch.h"
#include "io/example/example_batch_decoder.h"
#include "io/util/byte_source.h"

namespace drgrad::io {

enum class DataFormat { detect, shard, tfrecord };

// How the data is cut and ordered. The unit of work is a shard block, or a run of records of an
// uncompressed TFRecord file, or a whole compressed TFRecord file (a compressed stream cannot be
// entered in the middle). Units are dealt to ranks round-robin (unit i goes to rank i % num_ranks),
// so ranks see disjoint parts that together cover every sample once per epoch.
//
// Shuffling: each epoch, a rank's units are permuted (seeded by seed and epoch); consecutive
// groups of shuffle_window_units units form a window whose samples are permuted again (seeded by
// seed, epoch and window). A larger window mixes more and holds more samples in memory.
struct DatasetReaderOptions {
  std::vector<std::string> files;
  DataFormat format = DataFormat::detect;  // detect: per file, by its first record
  // Shards: when set, every shard must carry this schema (else SchemaMismatchError). Otherwise the
  // first shard's schema is used and the others must match it.
  std::optional<Schema> expected_schema;
  // TFRecord/Example files: the feature mapping (its schema is the output schema).
  std::optional<ExampleMapping> example_mapping;
  Compression tfrecord_compression = Compression::detect;
  std::int64_t tfrecord_records_per_unit = 1024;
  // Split TFRecord files among ranks by whole file instead of by runs of records (compressed
  // files are always split by file).
  bool tfrecord_split_by_file = false;

  std::int64_t batch_size = 256;
  bool drop_remainder = false;  // drop the last, smaller batch of each epoch
  bool shuffle = true;
  std::int64_t shuffle_window_units = 8;
  std::uint64_t seed = 0;
  std::int64_t num_epochs = 1;  // 0 = repeat forever
  int rank = 0;
  int num_ranks = 1;
  int decode_threads = 2;
  int prefetch_units = 16;  // decoded units held ahead of the consumer, at most
  // Skip damaged records (counted in corrupt_records_skipped()) instead of throwing.
  bool skip_corrupt = false;
};

// Where a reader stands: the next sample it will return is sample `sample_in_window` of window
// `window` of epoch `epoch`. plan_fingerprint ties it to the reader's files, split and seed.
struct ReaderPosition {
  std::int64_t epoch = 0;
  std::int64_t window = 0;
  std::int64_t sample_in_window = 0;
  std::uint64_t plan_fingerprint = 0;

  // "drgrad-reader-position v1 epoch=.. window=.. sample=.. plan=.." (text, one line).
  std::string serialize() const;
  // Throws std::invalid_argument for text serialize() did not produce.
  static ReaderPosition deserialize(std::string_view text);
  bool operator==(const ReaderPosition&) const = default;
};

// One consumer: next(), position() and restore() must be called from a single thread. Inside,
// decode threads fill numbered unit slots and one assembly thread turns windows into batches (the
// shuffled gather), up to two batches ahead of the caller.
class DatasetReader {
 public:
  // Opens every file (shard headers and indexes; TFRecord files are scanned once for record
  // offsets) and starts the decode threads. Throws std::invalid_argument for bad options,
  // CorruptRecordError / SchemaMismatchError for bad files.
  explicit DatasetReader(DatasetReaderOptions options);
  ~DatasetReader();
  DatasetReader(const DatasetReader&) = delete;
  DatasetReader& operator=(const DatasetReader&) = delete;

  // Fills `batch` with the next batch_size samples (fewer at the end of an epoch unless
  // drop_remainder; a batch never spans two epochs). Returns false when all epochs are done.
  // Rethrows a decode error (CorruptRecordError, SchemaMismatchError) at the point of the stream
  // where it occurred. Calling next() again decodes the failed window afresh (the file may have
  // been repaired meanwhile) and, once that succeeds, returns exactly what an uninterrupted reader
  // would have.
  bool next(Batch& batch);

  ReaderPosition position() const;
  // Continues from `position` exactly as if the reader had never stopped there. Throws
  // std::invalid_argument when the position belongs to another plan (files, split, seed, window),
  // leaving the reader as it was. A data error while decoding the position's window propagates;
  // call restore() again once the data is readable.
  void restore(const ReaderPosition& position);

  const Schema& schema() const;
  // The epoch of the batch next() returned last (0 before the first).
  std::int64_t epoch() const;
  // Samples this rank sees per epoch (from the indexes; damaged records skipped later reduce it),
  // or -1 when the input includes compressed TFRecord files, whose records are only counted as
  // they are decoded.
  std::int64_t samples_per_epoch() const;
  std::int64_t units_per_epoch() const;
  // Damaged records skipped so far (skip_corrupt), including those found while opening and in
  // windows already assembled ahead of the caller.
  std::int64_t corrupt_records_skipped() const;

 private:
  bool produce(Batch& batch);
  bool produce_unguarded(Batch& batch);
  ReaderPosition compute_position() const;
  void assembler_loop();
  void start_assembler();
  void stop_assembler();
  void restore_normalized(const ReaderPosition& position);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace drgrad::io
