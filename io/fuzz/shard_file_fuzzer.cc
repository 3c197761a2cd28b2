// libFuzzer target: a whole drgrad shard file (header, index, locator, crash-recovery scan and
// block reads) from arbitrary bytes. Damage may only raise CorruptRecordError or
// SchemaMismatchError. The input lives in an in-memory file (memfd) opened through /proc.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "io/shard/shard_file.h"
#include "io/util/errors.h"

using namespace drgrad::io;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const int descriptor = ::memfd_create("shard", 0);
  if (descriptor < 0) return 0;
  const std::uint8_t* bytes = data + 1;
  std::size_t left = size - 1;
  while (left > 0) {
    const ssize_t written = ::write(descriptor, bytes, left);
    if (written <= 0) break;
    bytes += written;
    left -= static_cast<std::size_t>(written);
  }
  const std::string path = "/proc/self/fd/" + std::to_string(descriptor);
  ShardOpenOptions options;
  options.skip_corrupt = (data[0] & 1) != 0;
  try {
    const ShardFile file(path, options);
    BlockDecoder decoder;
    std::vector<std::byte> scratch;
    Batch batch;
    for (std::int64_t block = 0; block < file.num_blocks() && block < 64; ++block) {
      try {
        file.read_block(block, decoder, scratch, batch);
        batch.validate(file.schema());
      } catch (const CorruptRecordError&) {
      }
    }
    describe_shard(file);
  } catch (const DataError&) {
  }
  ::close(descriptor);
  return 0;
}
