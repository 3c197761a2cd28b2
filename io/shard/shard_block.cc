// Shard payload codecs: schema header and columnar blocks. Decoding checks every size before it
// allocates or copies, because payloads come from disk and may be damaged.
#include "io/shard/shard_block.h"

#include <zstd.h>
#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>

#include "io/util/little_endian.h"

namespace drgrad::io {

using shard::BlockCodec;

std::string to_string(BlockCodec codec) {
  switch (codec) {
    case BlockCodec::none:
      return "none";
    case BlockCodec::zstd:
      return "zstd";
  }
  return "codec " + std::to_string(static_cast<std::uint32_t>(codec));
}

BlockCodec parse_block_codec(const std::string& text) {
  if (text == "none") return BlockCodec::none;
  if (text == "zstd") return BlockCodec::zstd;
  throw std::invalid_argument("unknown shard codec '" + text + "'; use none or zstd");
}

namespace {

// Bounds-checked reading of a payload.
class PayloadCursor {
 public:
  PayloadCursor(std::span<const std::byte> bytes, const char* what) : bytes_(bytes), what_(what) {}
  template <typename T>
  T read() {
    need(sizeof(T));
    const T value = load_le<T>(bytes_.data() + position_);
    position_ += sizeof(T);
    return value;
  }
  std::span<const std::byte> take(std::uint64_t count) {
    need(count);
    const auto out = bytes_.subspan(position_, static_cast<std::size_t>(count));
    position_ += static_cast<std::size_t>(count);
    return out;
  }
  std::string read_name() {
    const auto length = read<std::uint32_t>();
    const auto bytes = take(length);
    return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  std::size_t remaining() const { return bytes_.size() - position_; }
  void need(std::uint64_t count) const {
    if (count > remaining()) {
      throw ShardPayloadError(std::string(what_) + " is too short: needs " + std::to_string(count) +
                              " more bytes at byte " + std::to_string(position_) + ", has " +
                              std::to_string(remaining()));
    }
  }

 private:
  std::span<const std::byte> bytes_;
  const char* what_;
  std::size_t position_ = 0;
};

void append_name(std::string& out, const std::string& name) {
  append_le<std::uint32_t>(out, static_cast<std::uint32_t>(name.size()));
  out.append(name);
}

void append_floats(std::string& out, const float* values, std::size_t count) {
  out.append(reinterpret_cast<const char*>(values), count * sizeof(float));
}

// a * b, throwing when it overflows 64 bits.
std::uint64_t checked_product(std::uint64_t a, std::uint64_t b, const char* what) {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) {
    throw ShardPayloadError(std::string("block size overflows computing ") + what);
  }
  return a * b;
}

}  // namespace

std::string encode_shard_header(const ShardHeader& header) {
  std::string out(shard::kHeaderMagic, sizeof(shard::kHeaderMagic));
  append_le<std::uint32_t>(out, header.version);
  append_le<std::uint32_t>(out, static_cast<std::uint32_t>(header.codec));
  append_le<std::int32_t>(out, header.level);
  append_le<std::uint32_t>(out, 0);
  append_le<std::uint64_t>(out, header.schema.fingerprint());
  const Schema& schema = header.schema;
  append_le<std::uint32_t>(out, static_cast<std::uint32_t>(schema.num_dense()));
  append_le<std::uint32_t>(out, static_cast<std::uint32_t>(schema.num_sparse()));
  append_le<std::uint32_t>(out, static_cast<std::uint32_t>(schema.num_labels()));
  for (const auto& name : schema.dense_features) append_name(out, name);
  for (const auto& slot : schema.sparse_slots) {
    append_name(out, slot.name);
    append_le<std::int64_t>(out, slot.vocabulary_size);
  }
  for (const auto& name : schema.labels) append_name(out, name);
  return out;
}

ShardHeader decode_shard_header(std::span<const std::byte> payload) {
  PayloadCursor cursor(payload, "the shard header");
  const auto magic = cursor.take(sizeof(shard::kHeaderMagic));
  if (std::memcmp(magic.data(), shard::kHeaderMagic, sizeof(shard::kHeaderMagic)) != 0) {
    throw ShardPayloadError(
        "the header has the wrong magic (expected \"DRGSHARD\"): this is not "
        "a drgrad shard");
  }
  ShardHeader header;
  header.version = cursor.read<std::uint32_t>();
  header.codec = static_cast<BlockCodec>(cursor.read<std::uint32_t>());
  header.level = cursor.read<std::int32_t>();
  cursor.read<std::uint32_t>();
  header.fingerprint = cursor.read<std::uint64_t>();
  if (header.version != shard::kFormatVersion) return header;  // the caller reports the version
  if (header.codec != BlockCodec::none && header.codec != BlockCodec::zstd) {
    throw ShardPayloadError("the header names an unknown block codec " +
                            std::to_string(static_cast<std::uint32_t>(header.codec)));
  }
  const auto num_dense = cursor.read<std::uint32_t>();
  const auto num_sparse = cursor.read<std::uint32_t>();
  const auto num_labels = cursor.read<std::uint32_t>();
  if (std::uint64_t{num_dense} + num_sparse + num_labels > shard::kMaxSchemaEntries) {
    throw ShardPayloadError("the header's schema claims more than " +
                            std::to_string(shard::kMaxSchemaEntries) + " entries");
  }
  // Every entry needs at least its 4-byte name length: reject counts the payload cannot hold.
  cursor.need(4ull * (num_dense + num_sparse + num_labels));
  Schema& schema = header.schema;
  for (std::uint32_t i = 0; i < num_dense; ++i) schema.dense_features.push_back(cursor.read_name());
  for (std::uint32_t i = 0; i < num_sparse; ++i) {
    SparseSlotSchema slot;
    slot.name = cursor.read_name();
    slot.vocabulary_size = cursor.read<std::int64_t>();
    schema.sparse_slots.push_back(std::move(slot));
  }
  for (std::uint32_t i = 0; i < num_labels; ++i) schema.labels.push_back(cursor.read_name());
  if (schema.fingerprint() != header.fingerprint) {
    throw ShardPayloadError(
        "the stored schema does not match its stored fingerprint (the header "
        "is damaged)");
  }
  return header;
}

// ---- BlockEncoder ----

BlockEncoder::BlockEncoder(BlockCodec codec, int level) : codec_(codec), level_(level) {
  if (codec_ == BlockCodec::zstd) {
    if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) {
      throw std::invalid_argument("zstd level " + std::to_string(level) + " is out of range " +
                                  std::to_string(ZSTD_minCLevel()) + ".." +
                                  std::to_string(ZSTD_maxCLevel()));
    }
    context_ = ZSTD_createCCtx();
    if (!context_) throw std::runtime_error("ZSTD_createCCtx failed (out of memory?)");
  } else if (codec_ != BlockCodec::none) {
    throw std::invalid_argument("unknown block codec");
  }
}

BlockEncoder::~BlockEncoder() {
  if (context_) ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(context_));
}

void BlockEncoder::encode(const Batch& batch, std::int64_t begin, std::int64_t end,
                          std::string& payload) {
  if (begin < 0 || end < begin || end > batch.size) {
    throw std::invalid_argument("BlockEncoder::encode: row range out of bounds");
  }
  const auto rows = static_cast<std::size_t>(end - begin);
  const std::size_t num_dense = batch.size ? batch.dense.size() / batch.size : 0;
  const std::size_t num_labels = batch.size ? batch.labels.size() / batch.size : 0;
  body_.clear();
  append_le<std::uint32_t>(body_, static_cast<std::uint32_t>(num_dense));
  append_le<std::uint32_t>(body_, static_cast<std::uint32_t>(batch.sparse.size()));
  append_le<std::uint32_t>(body_, static_cast<std::uint32_t>(num_labels));
  append_le<std::uint32_t>(body_, 0);
  append_floats(body_, batch.dense.data() + begin * num_dense, rows * num_dense);
  append_floats(body_, batch.labels.data() + begin * num_labels, rows * num_labels);
  for (const SparseColumn& column : batch.sparse) {
    const std::int64_t first = column.offsets[begin];
    const std::int64_t last = column.offsets[end];
    // The narrowest width that holds every id of the block (ids are usually small vocabulary
    // indexes), and no per-sample counts when every sample has exactly one id: zstd then has a
    // fraction of the bytes to produce on reading.
    std::int64_t smallest = 0, largest = 0;
    for (std::int64_t i = first; i < last; ++i) {
      smallest = std::min(smallest, column.ids[i]);
      largest = std::max(largest, column.ids[i]);
    }
    const std::uint8_t width = smallest < 0            ? 8
                               : largest < (1 << 8)    ? 1
                               : largest < (1 << 16)   ? 2
                               : largest < (1LL << 32) ? 4
                                                       : 8;
    bool one_per_sample = last - first == end - begin;
    for (std::int64_t row = begin; row < end && one_per_sample; ++row) {
      one_per_sample = column.offsets[row + 1] - column.offsets[row] == 1;
    }
    append_le<std::uint64_t>(body_, static_cast<std::uint64_t>(last - first));
    append_le<std::uint8_t>(body_, width);
    append_le<std::uint8_t>(body_, one_per_sample ? shard::kIdsOnePerSample : shard::kIdsCounted);
    append_le<std::uint16_t>(body_, 0);
    if (!one_per_sample) {
      for (std::int64_t row = begin; row < end; ++row) {
        append_le<std::uint32_t>(
            body_, static_cast<std::uint32_t>(column.offsets[row + 1] - column.offsets[row]));
      }
    }
    const std::size_t start = body_.size();
    body_.resize(start + static_cast<std::size_t>(last - first) * width);
    char* out = body_.data() + start;
    for (std::int64_t i = first; i < last; ++i, out += width) {
      const auto id = static_cast<std::uint64_t>(column.ids[i]);
      std::memcpy(out, &id, width);  // little-endian: the low `width` bytes
    }
  }

  payload.clear();
  append_le<std::uint32_t>(payload, static_cast<std::uint32_t>(codec_));
  append_le<std::uint32_t>(payload, 0);
  append_le<std::uint64_t>(payload, rows);
  append_le<std::uint64_t>(payload, body_.size());
  if (codec_ == BlockCodec::none) {
    payload.append(body_);
    return;
  }
  const std::size_t bound = ZSTD_compressBound(body_.size());
  payload.resize(shard::kBlockHeaderBytes + bound);
  const std::size_t written = ZSTD_compressCCtx(static_cast<ZSTD_CCtx*>(context_),
                                                payload.data() + shard::kBlockHeaderBytes, bound,
                                                body_.data(), body_.size(), level_);
  if (ZSTD_isError(written)) {
    throw std::runtime_error(std::string("zstd compression failed: ") + ZSTD_getErrorName(written));
  }
  payload.resize(shard::kBlockHeaderBytes + written);
}

// ---- BlockDecoder ----

BlockDecoder::BlockDecoder() {
  context_ = ZSTD_createDCtx();
  if (!context_) throw std::runtime_error("ZSTD_createDCtx failed (out of memory?)");
}

BlockDecoder::~BlockDecoder() {
  ZSTD_freeDCtx(static_cast<ZSTD_DCtx*>(context_));
}

std::uint64_t BlockDecoder::sample_count(std::span<const std::byte> payload) {
  PayloadCursor cursor(payload, "the block");
  cursor.take(8);
  return cursor.read<std::uint64_t>();
}

void BlockDecoder::decode(std::span<const std::byte> payload, const Schema& schema,
                          BlockCodec expected_codec, Batch& out) {
  PayloadCursor header(payload, "the block");
  const auto codec = static_cast<BlockCodec>(header.read<std::uint32_t>());
  header.read<std::uint32_t>();
  const auto samples = header.read<std::uint64_t>();
  const auto body_size = header.read<std::uint64_t>();
  if (codec != expected_codec) {
    throw ShardPayloadError("the block's codec (" + to_string(codec) +
                            ") differs from the header's (" + to_string(expected_codec) + ")");
  }
  if (samples > std::numeric_limits<std::int32_t>::max()) {
    throw ShardPayloadError("the block claims " + std::to_string(samples) +
                            " samples, more than a block can hold");
  }
  if (body_size > shard::kMaxBlockBodyBytes) {
    throw ShardPayloadError("the block claims " + std::to_string(body_size) +
                            " decompressed bytes, more than the limit");
  }
  const std::span<const std::byte> stored = payload.subspan(shard::kBlockHeaderBytes);
  std::span<const std::byte> body;
  if (codec == BlockCodec::none) {
    if (stored.size() != body_size) {
      throw ShardPayloadError("the block body has " + std::to_string(stored.size()) +
                              " bytes, its header says " + std::to_string(body_size));
    }
    body = stored;
  } else if (codec == BlockCodec::zstd) {
    const unsigned long long frame_size = ZSTD_getFrameContentSize(stored.data(), stored.size());
    if (frame_size == ZSTD_CONTENTSIZE_ERROR || frame_size != body_size) {
      throw ShardPayloadError("the block's zstd frame is damaged or its size (" +
                              std::to_string(body_size) + " bytes) does not match");
    }
    body_.resize(static_cast<std::size_t>(body_size));
    const std::size_t produced =
        ZSTD_decompressDCtx(static_cast<ZSTD_DCtx*>(context_), body_.data(), body_.size(),
                            stored.data(), stored.size());
    if (ZSTD_isError(produced) || produced != body_size) {
      throw ShardPayloadError(
          std::string("the block's zstd data is damaged (") +
          (ZSTD_isError(produced) ? ZSTD_getErrorName(produced) : "short output") + ")");
    }
    body = std::span<const std::byte>(body_.data(), body_.size());
  } else {
    throw ShardPayloadError("unknown block codec " +
                            std::to_string(static_cast<std::uint32_t>(codec)));
  }

  last_body_bytes_ = body.size();
  PayloadCursor cursor(body, "the block body");
  const auto num_dense = cursor.read<std::uint32_t>();
  const auto num_sparse = cursor.read<std::uint32_t>();
  const auto num_labels = cursor.read<std::uint32_t>();
  cursor.read<std::uint32_t>();
  if (num_dense != schema.num_dense() || num_sparse != schema.num_sparse() ||
      num_labels != schema.num_labels()) {
    throw ShardPayloadError("the block holds " + std::to_string(num_dense) + " dense, " +
                            std::to_string(num_sparse) + " sparse, " + std::to_string(num_labels) +
                            " labels; the schema has " + schema.describe());
  }
  const std::uint64_t dense_count = checked_product(samples, num_dense, "dense values");
  const std::uint64_t label_count = checked_product(samples, num_labels, "labels");
  const auto dense_bytes = cursor.take(checked_product(dense_count, sizeof(float), "dense bytes"));
  const auto label_bytes = cursor.take(checked_product(label_count, sizeof(float), "label bytes"));
  out.size = static_cast<std::int64_t>(samples);
  out.dense.resize(static_cast<std::size_t>(dense_count));
  out.labels.resize(static_cast<std::size_t>(label_count));
  if (!dense_bytes.empty()) std::memcpy(out.dense.data(), dense_bytes.data(), dense_bytes.size());
  if (!label_bytes.empty()) std::memcpy(out.labels.data(), label_bytes.data(), label_bytes.size());
  out.sparse.resize(num_sparse);
  for (std::uint32_t slot = 0; slot < num_sparse; ++slot) {
    const auto id_count = cursor.read<std::uint64_t>();
    const auto width = cursor.read<std::uint8_t>();
    const auto layout = cursor.read<std::uint8_t>();
    cursor.read<std::uint16_t>();
    if (width != 1 && width != 2 && width != 4 && width != 8) {
      throw ShardPayloadError("sparse slot " + std::to_string(slot) + " stores ids in " +
                              std::to_string(width) + " bytes; only 1, 2, 4 or 8 exist");
    }
    SparseColumn& column = out.sparse[slot];
    column.offsets.resize(static_cast<std::size_t>(samples) + 1);
    column.offsets[0] = 0;
    if (layout == shard::kIdsOnePerSample) {
      if (id_count != samples) {
        throw ShardPayloadError("sparse slot " + std::to_string(slot) + " claims one id per " +
                                "sample but holds " + std::to_string(id_count) + " ids for " +
                                std::to_string(samples) + " samples");
      }
      std::iota(column.offsets.begin(), column.offsets.end(), std::int64_t{0});
    } else if (layout == shard::kIdsCounted) {
      const auto lengths = cursor.take(checked_product(samples, sizeof(std::uint32_t), "lengths"));
      std::uint64_t running = 0;
      for (std::uint64_t row = 0; row < samples; ++row) {
        running += load_le<std::uint32_t>(lengths.data() + row * sizeof(std::uint32_t));
        column.offsets[row + 1] = static_cast<std::int64_t>(running);
      }
      if (running != id_count) {
        throw ShardPayloadError("sparse slot " + std::to_string(slot) +
                                " has per-sample counts summing to " + std::to_string(running) +
                                " but " + std::to_string(id_count) + " ids");
      }
    } else {
      throw ShardPayloadError("sparse slot " + std::to_string(slot) + " has unknown id layout " +
                              std::to_string(layout));
    }
    const auto id_bytes = cursor.take(checked_product(id_count, width, "ids"));
    column.ids.resize(static_cast<std::size_t>(id_count));
    const auto* in = reinterpret_cast<const unsigned char*>(id_bytes.data());
    std::int64_t* ids = column.ids.data();
    switch (width) {
      case 1:
        for (std::uint64_t i = 0; i < id_count; ++i) ids[i] = in[i];
        break;
      case 2:
        for (std::uint64_t i = 0; i < id_count; ++i) ids[i] = load_le<std::uint16_t>(in + 2 * i);
        break;
      case 4:
        for (std::uint64_t i = 0; i < id_count; ++i) ids[i] = load_le<std::uint32_t>(in + 4 * i);
        break;
      default:
        if (id_count > 0) std::memcpy(ids, in, static_cast<std::size_t>(id_count) * 8);
        break;
    }
  }
  if (cursor.remaining() != 0) {
    throw ShardPayloadError("the block body has " + std::to_string(cursor.remaining()) +
                            " unexpected trailing bytes");
  }
}

}  // namespace drgrad::io
