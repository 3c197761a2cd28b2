// CPU memory and the dispatch between the CPU and CUDA allocators.
#include "kernels/core/memory.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace drgrad::kernels {

namespace cpu {
void* allocate(std::size_t bytes) {
  if (bytes == 0) return nullptr;
  const std::size_t rounded = (bytes + 63) / 64 * 64;
  void* pointer = std::aligned_alloc(64, rounded);
  if (pointer == nullptr) throw std::bad_alloc();
  return pointer;
}
void release(void* pointer) {
  std::free(pointer);
}
}  // namespace cpu

void* allocate(Device device, std::size_t bytes) {
  if (device.is_cuda()) DRGRAD_CUDA_TWIN(return cuda::allocate(device.index, bytes));
  return cpu::allocate(bytes);
}

void release(Device device, void* pointer) {
  if (pointer == nullptr) return;
  if (device.is_cuda()) {
    DRGRAD_CUDA_TWIN(cuda::release(device.index, pointer); return );
  }
  cpu::release(pointer);
}

void copy_bytes(Device dst_device, void* dst, Device src_device, const void* src,
                std::size_t bytes) {
  if (bytes == 0) return;
  if (dst_device.is_cuda() || src_device.is_cuda()) {
    DRGRAD_CUDA_TWIN(cuda::copy_bytes(dst_device, dst, src_device, src, bytes); return );
  }
  std::memcpy(dst, src, bytes);
}

void zero_bytes(Device device, void* pointer, std::size_t bytes) {
  if (bytes == 0) return;
  if (device.is_cuda()) {
    DRGRAD_CUDA_TWIN(cuda::zero_bytes(device.index, pointer, bytes); return );
  }
  std::memset(pointer, 0, bytes);
}

}  // namespace drgrad::kernels
