// libFuzzer target: drgrad shard payload decoders (header and block, both codecs). Damaged
// payloads may only raise ShardPayloadError; a decoded block must be a valid batch that re-encodes
// to the same samples.
#include <cstddef>
#include <cstdint>
#include <string>

#include "io/shard/shard_block.h"

using namespace drgrad::io;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> payload(reinterpret_cast<const std::byte*>(data), size);
  try {
    decode_shard_header(payload);
  } catch (const ShardPayloadError&) {
  }
  static BlockDecoder decoder;
  Schema schema;
  schema.dense_features = {"d0", "d1"};
  schema.sparse_slots = {{"s0", 10}, {"s1", 0}};
  schema.labels = {"y"};
  for (const auto codec : {shard::BlockCodec::none, shard::BlockCodec::zstd}) {
    Batch batch;
    try {
      decoder.decode(payload, schema, codec, batch);
    } catch (const ShardPayloadError&) {
      continue;
    }
    batch.validate(schema);
    BlockEncoder encoder(codec, 1);
    std::string encoded;
    encoder.encode(batch, 0, batch.size, encoded);
    Batch again;
    decoder.decode(std::span<const std::byte>(reinterpret_cast<const std::byte*>(encoded.data()),
                                              encoded.size()),
                   schema, codec, again);
    if (again.size != batch.size || again.sparse[0].ids != batch.sparse[0].ids ||
        again.sparse[1].offsets != batch.sparse[1].offsets) {
      __builtin_trap();
    }
  }
  return 0;
}
