// libFuzzer target: TFRecord framing (and the gzip/zlib decompressors) on arbitrary bytes. The
// first input byte picks the compression and skip_corrupt; the reader may only return records or
// raise CorruptRecordError.
#include <cstddef>
#include <cstdint>

#include "io/tfrecord/tfrecord_reader.h"
#include "io/util/errors.h"

using namespace drgrad::io;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::uint8_t control = data[0];
  const std::span<const std::byte> stream(reinterpret_cast<const std::byte*>(data + 1), size - 1);
  const Compression compressions[] = {Compression::none, Compression::gzip, Compression::zlib,
                                      Compression::detect};
  TfRecordReaderOptions options;
  options.skip_corrupt = (control & 4) != 0;
  options.max_record_bytes = 1 << 20;
  try {
    Compression used = Compression::none;
    auto source = open_memory_source(stream, compressions[control & 3], "fuzz", &used);
    TfRecordReader reader(std::move(source), "fuzz", used, options);
    std::span<const std::byte> record;
    std::size_t total = 0;
    if (control & 8) {
      while (reader.skip()) {
      }
    } else {
      while (reader.next(record)) total += record.size();
    }
    if (total > size * 1024) __builtin_trap();  // records cannot exceed the (inflated) input
  } catch (const CorruptRecordError&) {
  }
  return 0;
}
