// Raw device memory: allocation, copies between devices, zero fill. The engine's Tensor owns
// memory through these calls and never asks which device it is on.
#pragma once

#include <cstddef>
#include <string>

#include "kernels/core/device.h"

namespace drgrad::kernels {

// Returns `bytes` of memory on `device` (64-byte aligned on the CPU); nullptr for 0 bytes.
// Throws std::bad_alloc (CPU) or cuda::DeviceOutOfMemoryError (GPU, kernels/core/cuda_check.h)
// whose message is format_out_of_memory's when memory runs out.
void* allocate(Device device, std::size_t bytes);
void release(Device device, void* pointer);
// Copies `bytes` from src (on src_device) to dst (on dst_device); synchronous.
void copy_bytes(Device dst_device, void* dst, Device src_device, const void* src,
                std::size_t bytes);
void zero_bytes(Device device, void* pointer, std::size_t bytes);

// A byte count for people: "512 bytes", "1.50 KiB", "3.25 GiB" (binary units, two decimals).
std::string format_bytes(std::size_t bytes);

// The message of a failed device allocation: which call on which device asked for how much
// (requested_bytes 0: the call did not say), how much the device had free and in all
// (total_bytes 0: unknown, the query failed too), and what to do next: lower the batch size or
// the model when the request could fit an empty device, free the device of other work when
// others hold it, and a smaller model when the request exceeds the whole device. Pure string
// work, so that it is tested on machines without a GPU.
std::string format_out_of_memory(Device device, const std::string& call,
                                 std::size_t requested_bytes, std::size_t free_bytes,
                                 std::size_t total_bytes);

namespace cpu {
void* allocate(std::size_t bytes);
void release(void* pointer);
}  // namespace cpu

namespace cuda {
void* allocate(int device_index, std::size_t bytes);
// Stream-ordered allocation (cudaMallocAsync from the device's default pool) on `stream` (a
// cudaStream_t; nullptr: the default stream) of the current device; free it with
// release_async on a stream ordered after its last use. nullptr for 0 bytes. Runs out of memory
// with the same DeviceOutOfMemoryError as allocate.
void* allocate_async(std::size_t bytes, void* stream);
void release_async(void* pointer, void* stream);
void release(int device_index, void* pointer);
void copy_bytes(Device dst_device, void* dst, Device src_device, const void* src,
                std::size_t bytes);
void zero_bytes(int device_index, void* pointer, std::size_t bytes);
}  // namespace cuda

}  // namespace drgrad::kernels
