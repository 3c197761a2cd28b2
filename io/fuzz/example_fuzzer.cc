// libFuzzer target: tf.train.Example decoding, the mapping onto io::Batch, and the encoder's round
// trip. Malformed input may only raise ExampleParseError / ExampleMappingError.
#include <cstddef>
#include <cstdint>
#include <string>

#include "io/example/example.h"
#include "io/example/example_batch_decoder.h"

using namespace drgrad::io;

namespace {
ExampleBatchDecoder& batch_decoder() {
  static ExampleBatchDecoder decoder([] {
    ExampleMapping mapping;
    mapping.schema.dense_features = {"a", "b"};
    mapping.schema.sparse_slots = {{"c", 100}, {"d", 0}};
    mapping.schema.labels = {"y"};
    mapping.allow_missing_labels = true;
    return mapping;
  }());
  return decoder;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::byte> record(reinterpret_cast<const std::byte*>(data), size);
  try {
    const Example example = decode_example(record);
    // Our own encoding must decode to the same Example (compared by bytes: NaN != NaN).
    const std::string encoded = encode_example(example);
    const std::string reencoded = encode_example(decode_example(std::span<const std::byte>(
        reinterpret_cast<const std::byte*>(encoded.data()), encoded.size())));
    if (encoded != reencoded) __builtin_trap();
  } catch (const ExampleParseError&) {
  }
  Batch batch = Batch::empty_for(batch_decoder().schema());
  try {
    batch_decoder().append(record, batch);
  } catch (const ExampleParseError&) {
  } catch (const ExampleMappingError&) {
  }
  batch.validate(batch_decoder().schema());  // a failed append must leave the batch valid
  return 0;
}
