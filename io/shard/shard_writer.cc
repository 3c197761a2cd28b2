// ShardWriter: buffers samples until a block is full, frames each payload as a TFRecord record,
// and finishes with the index and locator records (see shard_format.h).
#include "io/shard/shard_writer.h"

#include <numeric>
#include <stdexcept>

#include "io/tfrecord/tfrecord_format.h"
#include "io/util/atomic_file.h"
#include "io/util/little_endian.h"

namespace drgrad::io {

ShardWriter::ShardWriter(const std::string& path, Schema schema, ShardWriterOptions options)
    : schema_(std::move(schema)), options_(options), encoder_(options.codec, options.level) {
  if (options_.samples_per_block <= 0) {
    throw std::invalid_argument("ShardWriter for '" + path +
                                "': samples_per_block must be positive");
  }
  pending_ = Batch::empty_for(schema_);
  file_ = std::make_unique<AtomicFileWriter>(path);
  ShardHeader header;
  header.codec = options_.codec;
  header.level = options_.codec == shard::BlockCodec::zstd ? options_.level : 0;
  header.schema = schema_;
  write_record(encode_shard_header(header));
}

ShardWriter::~ShardWriter() = default;

void ShardWriter::write_record(const std::string& payload) {
  std::byte header[tfrecord::kHeaderBytes];
  std::byte footer[tfrecord::kFooterBytes];
  const std::span<const std::byte> bytes(reinterpret_cast<const std::byte*>(payload.data()),
                                         payload.size());
  tfrecord::encode_header(payload.size(), header);
  tfrecord::encode_footer(bytes, footer);
  file_->write(std::span<const std::byte>(header, sizeof(header)));
  file_->write(bytes);
  file_->write(std::span<const std::byte>(footer, sizeof(footer)));
}

void ShardWriter::write_block(const Batch& batch, std::int64_t begin, std::int64_t end) {
  encoder_.encode(batch, begin, end, payload_);
  block_offsets_.push_back(file_->bytes_written());
  block_samples_.push_back(static_cast<std::uint64_t>(end - begin));
  write_record(payload_);
  samples_written_ += end - begin;
}

void ShardWriter::write(const Batch& batch) {
  if (closed_) throw std::logic_error("ShardWriter::write after close()");
  batch.validate(schema_);
  const std::int64_t block = options_.samples_per_block;
  // Fast path: nothing pending, write whole blocks straight from the caller's batch.
  const Batch* source = &batch;
  if (pending_.size > 0) {
    append_batch(pending_, batch);
    source = &pending_;
  }
  std::int64_t begin = 0;
  while (source->size - begin >= block) {
    write_block(*source, begin, begin + block);
    begin += block;
  }
  if (begin == source->size) {
    pending_ = Batch::empty_for(schema_);
    return;
  }
  std::vector<std::int64_t> rest(static_cast<std::size_t>(source->size - begin));
  std::iota(rest.begin(), rest.end(), begin);
  Batch remainder = gather_rows(*source, rest);
  pending_ = std::move(remainder);
}

void ShardWriter::close() {
  if (closed_) return;
  if (pending_.size > 0) write_block(pending_, 0, pending_.size);
  pending_ = Batch::empty_for(schema_);

  const std::uint64_t index_offset = file_->bytes_written();
  std::string index(shard::kIndexMagic, sizeof(shard::kIndexMagic));
  append_le<std::uint64_t>(index, block_offsets_.size());
  append_le<std::uint64_t>(index, static_cast<std::uint64_t>(samples_written_));
  for (std::size_t i = 0; i < block_offsets_.size(); ++i) {
    append_le<std::uint64_t>(index, block_offsets_[i]);
    append_le<std::uint64_t>(index, block_samples_[i]);
  }
  write_record(index);

  std::string locator;
  append_le<std::uint64_t>(locator, index_offset);
  locator.append(shard::kLocatorMagic, sizeof(shard::kLocatorMagic));
  write_record(locator);
  file_->commit();
  closed_ = true;
}

void write_shard(const std::string& path, const Schema& schema, const Batch& batch,
                 ShardWriterOptions options) {
  ShardWriter writer(path, schema, options);
  writer.write(batch);
  writer.close();
}

}  // namespace drgrad::io
