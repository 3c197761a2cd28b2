// Raw device memory: allocation, copies between devices, zero fill. The engine's Tensor owns
// memory through these calls and never asks which device it is on.
#pragma once

#include <cstddef>

#include "kernels/core/device.h"

namespace drgrad::kernels {

// Returns `bytes` of memory on `device` (64-byte aligned on the CPU); nullptr for 0 bytes.
// Throws std::bad_alloc (CPU) or a CUDA error naming the size (GPU) when memory runs out.
void* allocate(Device device, std::size_t bytes);
void release(Device device, void* pointer);
// Copies `bytes` from src (on src_device) to dst (on dst_device); synchronous.
void copy_bytes(Device dst_device, void* dst, Device src_device, const void* src,
                std::size_t bytes);
void zero_bytes(Device device, void* pointer, std::size_t bytes);

namespace cpu {
void* allocate(std::size_t bytes);
void release(void* pointer);
}  // namespace cpu

namespace cuda {
void* allocate(int device_index, std::size_t bytes);
void release(int device_index, void* pointer);
void copy_bytes(Device dst_device, void* dst, Device src_device, const void* src,
                std::size_t bytes);
void zero_bytes(int device_index, void* pointer, std::size_t bytes);
}  // namespace cuda

}  // namespace drgrad::kernels
