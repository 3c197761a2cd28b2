// Capture of stream work as a CUDA graph, replayed with one launch: the trainer captures a
// training step once per batch shape. While a capture runs on the calling thread, the memory
// calls of kernels/core/memory.h serve allocations from memory the graph owns (its arena) instead
// of the device's pool, defer frees of pool memory to the end of the capture, turn uploads from
// ordinary host memory into constants of the graph and refuse copies into host memory.
// docs/gpu.md, "Graph capture", has the whole story.
#pragma once

#include <cstddef>
#include <functional>
#include <stdexcept>

#include "kernels/core/device.h"

namespace drgrad::kernels {

// Thrown when work cannot be captured or replayed; the message says which call failed and why.
class GraphCaptureError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Stream work captured once as a CUDA graph and replayed with cudaGraphLaunch, together with the
// device memory the captured work allocated (the graph's own memory, its arena). Move-only.
//
// What the captured body may do, and what it means for the replays:
// - kernels::allocate (and so every tensor) returns arena memory: fixed addresses, the same on
//   every replay. Blocks released inside the body are reused by later allocations of the same
//   rounded size in the body (all captured work is ordered on the one stream). Blocks still held
//   when the body returns are written by every replay (the step's results, caches).
// - kernels::release of memory allocated before the capture is deferred: it is freed on the
//   stream right after the capture ends. So the step must not release a buffer that it reads and
//   that was allocated outside it: replays would read memory that is no longer the graph's.
// - kernels::copy_bytes from ordinary (pageable) host memory copies the bytes into page-locked
//   memory of the arena at capture time: they are CONSTANTS of the graph, replayed unchanged.
//   Per-step inputs must be uploaded outside the body, into buffers that the captured work reads.
//   Copies from page-locked host memory read it when each replay runs.
// - kernels::copy_bytes into host memory throws GraphCaptureError (it synchronises the stream);
//   so does any other host synchronisation (CUDA reports it and the capture fails).
// - HostReadback::start is captured (the copy and its event) and counts as pending from then on,
//   so the first launch is waited for as an eager step would be; after each later launch call
//   HostReadback::expect_copy before ready()/wait().
// - All work must be issued on the capture stream (or streams joined back to it with events).
class CudaGraph {
 public:
  CudaGraph() = default;  // empty
  // Runs `body` under stream capture (cudaStreamBeginCapture, cudaStreamCaptureModeRelaxed) on
  // `stream` (a cudaStream_t on `device`, which must be the calling thread's current stream on
  // that device: std::invalid_argument otherwise, and for the legacy default stream, nullptr,
  // which cannot be captured), instantiates the graph and returns it. Nothing in the body has
  // run on the device when this returns: launch() runs it the first time. On any failure (the
  // body throws, the capture is invalidated, instantiation fails) it ends the capture, releases
  // what it allocated where it can (blocks still held by tensors stay until they are released)
  // and throws GraphCaptureError naming the failure, with the inner message. CPU device or a
  // build without CUDA: NotSupportedError. std::logic_error when a capture is already running on
  // this thread for `device`.
  static CudaGraph capture(Device device, void* stream, const std::function<void()>& body);
  // Replays the graph on `stream` (cudaGraphLaunch; any stream of the device, usually the
  // capture stream). std::logic_error when empty.
  void launch(void* stream) const;
  bool empty() const { return exec_ == nullptr; }
  // Bytes of the graph's own device memory (its chunks; page-locked constants not counted).
  std::size_t memory_bytes() const;
  // Nodes of the captured graph (cudaGraphGetNodes).
  std::size_t node_count() const { return node_count_; }

  // Destroying the graph frees its memory once no block of it is held any more: at once when
  // none is, otherwise when the last one is released (the memory stays the holders' until then).
  ~CudaGraph();
  CudaGraph(CudaGraph&& other) noexcept;
  CudaGraph& operator=(CudaGraph&& other) noexcept;
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

 private:
  void swap(CudaGraph& other) noexcept;

  Device device_;
  void* exec_ = nullptr;   // cudaGraphExec_t
  void* arena_ = nullptr;  // the graph's memory (GraphArena in cuda_graph_cuda.cu)
  std::size_t node_count_ = 0;
};

// True while the calling thread is inside CudaGraph::capture's body for `device` (always false
// for the CPU and in builds without CUDA).
bool capturing(Device device);

namespace cuda {
// What cuda_graph_cuda.cu hands back to CudaGraph::capture.
struct CapturedGraph {
  void* exec = nullptr;
  void* arena = nullptr;
  std::size_t node_count = 0;
};
CapturedGraph capture_graph(int device_index, void* stream, const std::function<void()>& body);
void launch_graph(int device_index, void* exec, void* stream);
// Destroys the executable graph and gives up the arena (freed now or when its last block is
// released). Never throws.
void destroy_graph(int device_index, void* exec, void* arena) noexcept;
std::size_t graph_memory_bytes(const void* arena);
bool capturing(int device_index);

// Hooks for memory_cuda.cu. The allocation served from the arena of the capture running on this
// thread for the device, or nullptr when none runs (bytes > 0).
void* graph_allocate(int device_index, std::size_t bytes);
// True when `pointer` was dealt with here: a block of some graph's memory (back to the running
// capture's free list, or just no longer held), or pool memory released during a capture on this
// thread for the device (freed when the capture ends). False: free it as usual. Cheap when no
// graph memory exists and no capture runs.
bool graph_release(int device_index, void* pointer);
// Copies `bytes` from `source` into page-locked memory of the running capture's arena and returns
// where; the caller copies from there in the captured work. Requires capturing(device_index).
const void* graph_host_constant(int device_index, const void* source, std::size_t bytes);
}  // namespace cuda

}  // namespace drgrad::kernels
