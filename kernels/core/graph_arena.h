// Bookkeeping of the memory a captured CUDA graph owns (kernels/core/cuda_graph.h): chunks,
// 256-byte aligned bump allocation inside them, reuse of blocks released during the same capture
// by exact size, and which blocks are still held. Pure host logic on abstract addresses without
// CUDA calls, so that the CPU tests check it; the chunks' memory comes from a callback (cudaMalloc
// or cudaMallocHost in cuda_graph_cuda.cu). Not thread-safe: the caller locks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace drgrad::kernels {

class GraphArenaPlan {
 public:
  // Returns the first address of a new chunk of exactly `bytes` bytes (aligned to the plan's
  // alignment), or throws.
  using ChunkSource = std::function<std::uintptr_t(std::size_t bytes)>;

  struct Chunk {
    std::uintptr_t base = 0;
    std::size_t bytes = 0;
    std::size_t used = 0;  // bump offset: everything below it has been handed out once
  };

  static constexpr std::size_t kDefaultChunkBytes = std::size_t(64) << 20;

  // Chunks of max(min_chunk_bytes, the request rounded up) from `source`; blocks aligned to
  // `alignment` (a power of two).
  explicit GraphArenaPlan(ChunkSource source, std::size_t min_chunk_bytes = kDefaultChunkBytes,
                          std::size_t alignment = 256)
      : source_(std::move(source)), min_chunk_bytes_(min_chunk_bytes), alignment_(alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) {
      throw std::invalid_argument("GraphArenaPlan: alignment " + std::to_string(alignment) +
                                  " is not a power of two");
    }
    if (!source_) throw std::invalid_argument("GraphArenaPlan: no chunk source");
  }
  GraphArenaPlan(const GraphArenaPlan&) = delete;
  GraphArenaPlan& operator=(const GraphArenaPlan&) = delete;

  // A block of at least `bytes` (0 for 0 bytes): a block of the same rounded size released
  // earlier with reuse, else the next aligned bytes of a chunk with room, else a new chunk.
  // std::logic_error once sealed.
  std::uintptr_t allocate(std::size_t bytes) {
    if (sealed_) {
      throw std::logic_error(
          "GraphArenaPlan::allocate after the capture ended: a graph's memory is fixed once "
          "captured");
    }
    if (bytes == 0) return 0;
    const std::size_t size = rounded(bytes);
    std::uintptr_t address = 0;
    auto reusable = free_.find(size);
    if (reusable != free_.end() && !reusable->second.empty()) {
      address = reusable->second.back();
      reusable->second.pop_back();
    } else {
      address = bump(size);
    }
    live_.emplace(address, size);
    live_bytes_ += size;
    return address;
  }

  // Ends the block at `address` (std::invalid_argument when it is not a live block: released
  // twice, or never handed out). With `reuse` (the capture that allocated it is still running
  // on the stream that used it) a later allocate of the same rounded size gets it back; without
  // it the bytes are never handed out again, since a graph's replays keep using them. Returns the
  // block's rounded size.
  std::size_t release(std::uintptr_t address, bool reuse) {
    const auto block = live_.find(address);
    if (block == live_.end()) {
      throw std::invalid_argument(
          "GraphArenaPlan::release: address is not a live block of this graph's memory "
          "(released twice?)");
    }
    const std::size_t size = block->second;
    live_.erase(block);
    live_bytes_ -= size;
    if (reuse && !sealed_) free_[size].push_back(address);
    return size;
  }

  // Ends allocation (the capture is over); forgets the free lists.
  void seal() {
    sealed_ = true;
    free_.clear();
  }
  bool sealed() const { return sealed_; }

  // True when `address` lies inside one of the chunks (live, released or never handed out).
  bool owns(std::uintptr_t address) const {
    for (const Chunk& chunk : chunks_) {
      if (address >= chunk.base && address - chunk.base < chunk.bytes) return true;
    }
    return false;
  }
  bool live(std::uintptr_t address) const { return live_.count(address) > 0; }
  std::size_t live_blocks() const { return live_.size(); }
  std::size_t live_bytes() const { return live_bytes_; }
  // Bytes obtained from the source, all chunks together.
  std::size_t chunk_bytes() const {
    std::size_t total = 0;
    for (const Chunk& chunk : chunks_) total += chunk.bytes;
    return total;
  }
  const std::vector<Chunk>& chunks() const { return chunks_; }
  std::size_t rounded(std::size_t bytes) const {
    return (bytes + alignment_ - 1) / alignment_ * alignment_;
  }

 private:
  // The next `size` bytes of the first chunk with room, or of a new chunk.
  std::uintptr_t bump(std::size_t size) {
    for (Chunk& chunk : chunks_) {
      if (chunk.bytes - chunk.used >= size) {
        const std::uintptr_t address = chunk.base + chunk.used;
        chunk.used += size;
        return address;
      }
    }
    const std::size_t chunk_size = size > min_chunk_bytes_ ? size : rounded(min_chunk_bytes_);
    const std::uintptr_t base = source_(chunk_size);
    if (base == 0 || base % alignment_ != 0) {
      throw std::invalid_argument(
          "GraphArenaPlan: chunk source returned an address not aligned to " +
          std::to_string(alignment_) + " bytes");
    }
    chunks_.push_back({base, chunk_size, size});
    return base;
  }

  ChunkSource source_;
  std::size_t min_chunk_bytes_, alignment_;
  std::vector<Chunk> chunks_;
  std::unordered_map<std::size_t, std::vector<std::uintptr_t>> free_;  // rounded size -> blocks
  std::unordered_map<std::uintptr_t, std::size_t> live_;               // address -> rounded size
  std::size_t live_bytes_ = 0;
  bool sealed_ = false;
};

}  // namespace drgrad::kernels
