// CPU memory and the dispatch between the CPU and CUDA allocators (the CUDA side on the calling
// thread's current stream).
#include "kernels/core/memory.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#include "kernels/core/stream.h"

namespace drgrad::kernels {

namespace cpu {
namespace {
// Training allocates tensors of the same few sizes every step; reusing freed blocks by size
// avoids the page faults and zero-filling of fresh allocations (about a tenth of a CPU step,
// docs/benchmarks.md). At most kMaxCachedBytes stay cached; the rest goes back to the system.
class BlockCache {
 public:
  static constexpr std::size_t kMaxCachedBytes = std::size_t(1) << 30;

  void* take(std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto found = free_.find(bytes);
    if (found == free_.end() || found->second.empty()) return nullptr;
    void* pointer = found->second.back();
    found->second.pop_back();
    cached_bytes_ -= bytes;
    return pointer;
  }
  // Returns false when the cache is full (the caller frees the block).
  bool give(void* pointer, std::size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_bytes_ + bytes > kMaxCachedBytes) return false;
    free_[bytes].push_back(pointer);
    cached_bytes_ += bytes;
    return true;
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::size_t cached_bytes_ = 0;
};

// Never destroyed: tensors may still be released during static destruction.
BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache();
  return *cache;
}

// Each block starts with a 64-byte header holding its rounded size, so release() can file it.
constexpr std::size_t kHeader = 64;
}  // namespace

void* allocate(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  const std::size_t rounded = (bytes + 63) / 64 * 64;
  void* block = block_cache().take(rounded);
  if (block == nullptr) {
    block = std::aligned_alloc(64, rounded + kHeader);
    if (block == nullptr) throw std::bad_alloc();
    *static_cast<std::size_t*>(block) = rounded;
  }
  return static_cast<char*>(block) + kHeader;
}

void release(void* pointer) {
  if (pointer == nullptr) return;
  void* block = static_cast<char*>(pointer) - kHeader;
  const std::size_t rounded = *static_cast<std::size_t*>(block);
  if (!block_cache().give(block, rounded)) std::free(block);
}
}  // namespace cpu

void* allocate(Device device, std::size_t bytes) {
  if (device.is_cuda()) {
    DRGRAD_CUDA_TWIN(return cuda::allocate_async_on(device.index, bytes, current_stream(device)));
  }
  return cpu::allocate(bytes);
}

void release(Device device, void* pointer) {
  if (pointer == nullptr) return;
  if (device.is_cuda()) {
    DRGRAD_CUDA_TWIN(cuda::release_async_on(device.index, pointer, current_stream(device));
                     return );
  }
  cpu::release(pointer);
}

void copy_bytes(Device dst_device, void* dst, Device src_device, const void* src,
                std::size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cuda() || src_device.is_cuda()) {
    DRGRAD_CUDA_TWIN(cuda::copy_bytes(dst_device, dst, src_device, src, bytes, nullptr); return );
  }
  std::memcpy(dst, src, bytes);
}

std::string format_bytes(std::size_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " bytes";
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes) / 1024.0;
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof(text), "%.2f %s", value, kUnits[unit]);
  return text;
}

std::string format_out_of_memory(Device device, const std::string& call,
                                 std::size_t requested_bytes, std::size_t free_bytes,
                                 std::size_t total_bytes) {
  const std::string where = device.to_string();
  std::string message = "out of device memory on " + where + ": " + call + " asked for ";
  message += requested_bytes > 0 ? format_bytes(requested_bytes) + " (" +
                                       std::to_string(requested_bytes) + " bytes)"
                                 : "an unknown number of bytes";
  if (total_bytes == 0) {
    message += "; the free and total memory of the device could not be read either";
  } else {
    const double percent =
        100.0 * static_cast<double>(free_bytes) / static_cast<double>(total_bytes);
    char share[32];
    std::snprintf(share, sizeof(share), "%.1f%%", percent);
    message += "; " + format_bytes(free_bytes) + " of " + format_bytes(total_bytes) +
               " was free (" + share + ")";
  }
  message += ". ";
  if (requested_bytes > 0 && total_bytes > 0 && requested_bytes > total_bytes) {
    // No amount of freeing helps: this single buffer is larger than the device.
    message +=
        "One buffer larger than the whole device cannot be allocated: shrink what it holds "
        "(training.batch_size for activations, the vocabulary or dimension of the largest "
        "embedding table, the widest layer), or train on the CPU (training.device = \"cpu\").";
  } else {
    message +=
        "Lower training.batch_size (activations and their gradients grow with it), or use "
        "fewer or narrower experts, towers or embedding tables";
    if (total_bytes > 0 && free_bytes < total_bytes / 2) {
      message += "; more than half of " + where +
                 " is in use, by this process or by others: nvidia-smi lists the processes "
                 "holding it";
    }
    message += ".";
  }
  return message;
}

void zero_bytes(Device device, void* pointer, std::size_t bytes) {
  if (bytes == 0) return;
  if (device.is_cuda()) {
    DRGRAD_CUDA_TWIN(cuda::zero_bytes(device.index, pointer, bytes, nullptr); return );
  }
  std::memset(pointer, 0, bytes);
}

}  // namespace drgrad::kernels
