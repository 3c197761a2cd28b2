// Raw device memory: allocation, copies between devices, zero fill. The engine's Tensor owns
// memory through these calls and never asks which device it is on. On CUDA all of them are
// ordered on the calling thread's current stream (kernels/core/stream.h). While the calling
// thread captures a CUDA graph (kernels/core/cuda_graph.h) they behave as described there:
// allocations from the graph's own memory, frees of pool memory deferred to the end of the
// capture, uploads from pageable memory turned into constants, copies into host memory refused.
#pragma once

#include <cstddef>
#include <string>

#include "kernels/core/device.h"

namespace drgrad::kernels {

// Returns `bytes` of memory on `device` (64-byte aligned on the CPU); nullptr for 0 bytes.
// Throws std::bad_alloc (CPU) or cuda::DeviceOutOfMemoryError (GPU, kernels/core/cuda_check.h)
// whose message is format_out_of_memory's when memory runs out.
// On CUDA this is stream-ordered (cudaMallocAsync on the current stream of `device`, from the
// device's default memory pool, whose release threshold is raised on first use so that freed
// blocks stay in the pool and are handed out again: a caching allocator kept by the driver).
// The memory may be used on the current stream at once, and on any other stream once that
// stream is ordered after the allocation. When the pool cannot grow, the blocks it caches are
// returned to the device (after a device synchronisation) and the allocation is tried once more.
void* allocate(Device device, std::size_t bytes);
// On CUDA cudaFreeAsync on the current stream of `device`: the memory returns to the pool when
// the stream reaches this point, so it must be called after the last use has been issued on a
// stream ordered with the current one (the legacy default stream and blocking streams are).
void release(Device device, void* pointer);
// Copies `bytes` from src (on src_device) to dst (on dst_device). On CUDA a cudaMemcpyAsync on
// the current stream of the CUDA side (dst's when both are devices): a copy into host memory
// synchronises that stream before returning, so the host may read dst at once. A copy from
// ordinary (pageable) host memory of at most 16 MiB is copied on the host into a page-locked
// staging ring (32 MiB per thread and device) and issued from there, so it returns without
// waiting for the stream (only when the ring comes round to bytes whose copy has not run yet);
// larger ones are staged by the driver, which may wait for the stream. Either way src may be
// reused at once. From page-locked host memory the copy reads src later: keep it unchanged until
// the stream gets there. Device-to-device copies do not block the host. CPU to CPU: memcpy.
void copy_bytes(Device dst_device, void* dst, Device src_device, const void* src,
                std::size_t bytes);
// On CUDA cudaMemsetAsync on the current stream of `device`.
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
// cudaMalloc, outside any stream: for buffers that live as long as the process or a thread
// (library workspaces); release with release(). Tensors use the stream-ordered path.
void* allocate(int device_index, std::size_t bytes);
void release(int device_index, void* pointer);
// Stream-ordered allocation (cudaMallocAsync from the device's default pool, its release
// threshold raised as for kernels::allocate) on `stream` (a cudaStream_t; nullptr: the calling
// thread's current stream, kernels/core/stream.h) of the current device; free it with
// release_async on a stream ordered after its last use. nullptr for 0 bytes. Runs out of memory
// with the same DeviceOutOfMemoryError as allocate, after one retry with the pool's cached
// blocks returned to the device.
void* allocate_async(std::size_t bytes, void* stream);
void release_async(void* pointer, void* stream);
// The same on a named device: makes it current first.
void* allocate_async_on(int device_index, std::size_t bytes, void* stream);
void release_async_on(int device_index, void* pointer, void* stream);
// Asynchronous on `stream` (nullptr: the current stream of the CUDA side) as described for
// kernels::copy_bytes.
void copy_bytes(Device dst_device, void* dst, Device src_device, const void* src, std::size_t bytes,
                void* stream);
void zero_bytes(int device_index, void* pointer, std::size_t bytes, void* stream);
}  // namespace cuda

}  // namespace drgrad::kernels
