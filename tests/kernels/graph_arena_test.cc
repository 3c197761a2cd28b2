// The bookkeeping of a CUDA graph's own memory (kernels/core/graph_arena.h) on made-up addresses:
// aligned bump allocation, reuse of a released block of the same size during the capture and
// never after it, no reuse of a live block, a new chunk for a request the chunks cannot hold,
// owns(), and the live count that decides when an orphaned graph's memory is freed.
#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <set>
#include <stdexcept>
#include <vector>

#include "kernels/core/graph_arena.h"

namespace drgrad::kernels {
namespace {

constexpr std::size_t kMiB = std::size_t(1) << 20;

// Hands out chunks at made-up, widely spaced addresses and records what it was asked for.
struct FakeChunks {
  std::uintptr_t next = 0x10000000;
  std::vector<std::size_t> sizes;
  GraphArenaPlan::ChunkSource source() {
    return [this](std::size_t bytes) {
      sizes.push_back(bytes);
      const std::uintptr_t base = next;
      next += (bytes / kMiB + 2) * kMiB;  // a gap, so that owns() has addresses between chunks
      return base;
    };
  }
};

TEST_CASE("graph arena hands out aligned blocks from one chunk", "[graph]") {
  FakeChunks chunks;
  GraphArenaPlan plan(chunks.source(), 4 * kMiB, 256);
  CHECK(plan.allocate(0) == 0);
  CHECK(chunks.sizes.empty());  // nothing asked of the source for nothing
  const std::uintptr_t a = plan.allocate(1);
  const std::uintptr_t b = plan.allocate(300);
  const std::uintptr_t c = plan.allocate(256);
  CHECK(chunks.sizes == std::vector<std::size_t>{4 * kMiB});
  CHECK(a == 0x10000000);
  CHECK(b == a + 256);
  CHECK(c == b + 512);
  for (const std::uintptr_t block : {a, b, c}) CHECK(block % 256 == 0);
  CHECK(plan.live_blocks() == 3);
  CHECK(plan.live_bytes() == 256 + 512 + 256);
  CHECK(plan.chunk_bytes() == 4 * kMiB);
}

TEST_CASE("graph arena reuses a released block of the same size, never a live one", "[graph]") {
  FakeChunks chunks;
  GraphArenaPlan plan(chunks.source(), 4 * kMiB, 256);
  const std::uintptr_t first = plan.allocate(1000);   // 1024 bytes
  const std::uintptr_t second = plan.allocate(1024);  // the same rounded size, still live
  CHECK(first != second);
  CHECK(plan.release(first, /*reuse=*/true) == 1024);
  CHECK_FALSE(plan.live(first));
  CHECK(plan.live(second));
  // Another size does not take the released block.
  const std::uintptr_t other_size = plan.allocate(2048);
  CHECK(other_size != first);
  // The same rounded size does, and the live block is not handed out again.
  const std::uintptr_t again = plan.allocate(1023);
  CHECK(again == first);
  const std::uintptr_t fresh = plan.allocate(1024);
  CHECK(fresh != first);
  CHECK(fresh != second);
  // Every live block is distinct.
  const std::set<std::uintptr_t> live{second, other_size, again, fresh};
  CHECK(live.size() == 4);
  CHECK(plan.live_blocks() == 4);
}

TEST_CASE("graph arena does not reuse a block released without reuse or after sealing", "[graph]") {
  FakeChunks chunks;
  GraphArenaPlan plan(chunks.source(), 4 * kMiB, 256);
  const std::uintptr_t kept_by_graph = plan.allocate(512);
  plan.release(kept_by_graph, /*reuse=*/false);  // released by someone outside the capture
  CHECK(plan.allocate(512) != kept_by_graph);

  const std::uintptr_t held = plan.allocate(768);
  const std::uintptr_t released_in_capture = plan.allocate(768);
  plan.release(released_in_capture, /*reuse=*/true);
  plan.seal();  // the capture ended
  CHECK(plan.sealed());
  CHECK_THROWS_AS(plan.allocate(768), std::logic_error);
  // After the capture, releases only end the block; its bytes stay the graph's.
  CHECK(plan.release(held, /*reuse=*/true) == 768);
  CHECK_FALSE(plan.live(held));
}

TEST_CASE("graph arena grows by a new chunk for what the chunks cannot hold", "[graph]") {
  FakeChunks chunks;
  GraphArenaPlan plan(chunks.source(), 4 * kMiB, 256);
  const std::uintptr_t small = plan.allocate(3 * kMiB);
  // Larger than the minimum chunk: a chunk of exactly its rounded size.
  const std::uintptr_t large = plan.allocate(10 * kMiB + 1);
  REQUIRE(chunks.sizes.size() == 2);
  CHECK(chunks.sizes[1] == 10 * kMiB + 256);
  CHECK(large == 0x10000000 + 6 * kMiB);  // the second fake chunk
  // The first chunk still has 1 MiB free: a small request goes there, not to a third chunk.
  const std::uintptr_t tail = plan.allocate(kMiB);
  CHECK(tail == small + 3 * kMiB);
  CHECK(chunks.sizes.size() == 2);
  // Neither chunk has room for 2 MiB any more: a third chunk of the minimum size.
  plan.allocate(2 * kMiB);
  REQUIRE(chunks.sizes.size() == 3);
  CHECK(chunks.sizes[2] == 4 * kMiB);
  CHECK(plan.chunk_bytes() == 4 * kMiB + 10 * kMiB + 256 + 4 * kMiB);
  CHECK(plan.chunks().size() == 3);
}

TEST_CASE("graph arena knows which addresses are its own", "[graph]") {
  FakeChunks chunks;
  GraphArenaPlan plan(chunks.source(), 4 * kMiB, 256);
  CHECK_FALSE(plan.owns(0x10000000));  // no chunk yet
  const std::uintptr_t block = plan.allocate(100);
  CHECK(plan.owns(block));
  CHECK(plan.owns(block + 99));
  CHECK(plan.owns(0x10000000 + 4 * kMiB - 1));  // handed out or not, the chunk is the graph's
  CHECK_FALSE(plan.owns(0x10000000 + 4 * kMiB));
  CHECK_FALSE(plan.owns(0x10000000 - 1));
  plan.release(block, true);
  CHECK(plan.owns(block));  // released blocks stay inside the chunk
}

TEST_CASE("graph arena counts live blocks down to zero and refuses a double release", "[graph]") {
  FakeChunks chunks;
  GraphArenaPlan plan(chunks.source(), 4 * kMiB, 256);
  std::vector<std::uintptr_t> blocks;
  for (std::size_t i = 1; i <= 20; ++i) blocks.push_back(plan.allocate(i * 100));
  CHECK(plan.live_blocks() == 20);
  plan.seal();  // as when its CudaGraph is destroyed while tensors still hold blocks
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    CHECK(plan.live_blocks() == 20 - i);
    plan.release(blocks[i], false);
  }
  CHECK(plan.live_blocks() == 0);
  CHECK(plan.live_bytes() == 0);
  CHECK_THROWS_AS(plan.release(blocks[3], false), std::invalid_argument);
  CHECK_THROWS_AS(plan.release(0x1234, false), std::invalid_argument);
}

TEST_CASE("graph arena refuses a bad alignment and a misaligned chunk", "[graph]") {
  FakeChunks chunks;
  CHECK_THROWS_AS(GraphArenaPlan(chunks.source(), kMiB, 100), std::invalid_argument);
  GraphArenaPlan plan([](std::size_t) { return std::uintptr_t(0x10000010); }, kMiB, 256);
  CHECK_THROWS_AS(plan.allocate(1), std::invalid_argument);
}

}  // namespace
}  // namespace drgrad::kernels
