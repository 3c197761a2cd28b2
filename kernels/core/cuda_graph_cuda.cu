// CUDA side of kernels/core/cuda_graph.h: stream capture, instantiation and launch of graphs, and
// the graph's own memory (its arena): device chunks from cudaMalloc and page-locked chunks for the
// graph's constants, with the bookkeeping of kernels/core/graph_arena.h. memory_cuda.cu asks the
// hooks at the end of this file during a capture and whenever graph memory exists.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "kernels/core/cuda_check.h"
#include "kernels/core/cuda_graph.h"
#include "kernels/core/graph_arena.h"
#include "kernels/core/memory.h"

namespace drgrad::kernels::cuda {

namespace {

// Constants uploaded in a step are small (segment tables, scalars): page-locked chunks of 1 MiB,
// or one of the upload's size when larger.
constexpr std::size_t kHostConstantChunkBytes = std::size_t(1) << 20;

constexpr const char* kCaptureAdvice =
    "the step does work that a CUDA graph cannot hold (a host synchronisation or a copy to host "
    "memory inside the step); set training.cuda_graph = false";

std::string describe(cudaError_t status) {
  return std::string(cudaGetErrorName(status)) + " (" + cudaGetErrorString(status) + ")";
}

std::string device_name(int device_index) {
  return "cuda:" + std::to_string(device_index);
}

class GraphArena;

// Every chunk of graph device memory alive in the process, by first address, so that a release
// can tell graph memory from pool memory. `arenas` counts the arenas alive: while it is 0 and no
// capture runs on the thread, a release goes straight to the pool without taking the mutex.
// Never destroyed: tensors may still be released during static destruction.
struct Registry {
  struct Range {
    std::uintptr_t end;
    GraphArena* arena;
  };
  std::mutex mutex;
  std::map<std::uintptr_t, Range> chunks;
  std::atomic<int> arenas{0};
};

Registry& registry() {
  static Registry* instance = new Registry();
  return *instance;
}

// The memory one captured graph owns. Created by capture_graph, owned by its CudaGraph, and, once
// the CudaGraph is gone while blocks are still held (orphaned), by the registry until the last
// block is released. Every member is guarded by the registry's mutex.
class GraphArena {
 public:
  explicit GraphArena(int device_index)
      : device_index_(device_index),
        device_plan_([this](std::size_t bytes) { return new_device_chunk(bytes); }),
        host_plan_([this](std::size_t bytes) { return new_host_chunk(bytes); },
                   kHostConstantChunkBytes) {}
  GraphArena(const GraphArena&) = delete;
  GraphArena& operator=(const GraphArena&) = delete;

  int device_index() const { return device_index_; }
  GraphArenaPlan& device_plan() { return device_plan_; }
  const GraphArenaPlan& device_plan() const { return device_plan_; }
  GraphArenaPlan& host_plan() { return host_plan_; }
  bool orphaned = false;

 private:
  // Called by device_plan_ with the registry's mutex held.
  std::uintptr_t new_device_chunk(std::size_t bytes) {
    void* pointer = nullptr;
    cudaError_t status = cudaMalloc(&pointer, bytes);
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      cudaMemPool_t pool = nullptr;
      if (cudaDeviceGetDefaultMemPool(&pool, device_index_) == cudaSuccess) {
        static_cast<void>(cudaMemPoolTrimTo(pool, 0));
      }
      cudaGetLastError();
      status = cudaMalloc(&pointer, bytes);
    }
    if (status != cudaSuccess) {
      throw_allocation_failure(status, "cudaMalloc (memory of a CUDA graph)", device_index_, bytes);
    }
    const auto base = reinterpret_cast<std::uintptr_t>(pointer);
    registry().chunks.emplace(base, Registry::Range{base + bytes, this});
    return base;
  }

  std::uintptr_t new_host_chunk(std::size_t bytes) {
    void* pointer = nullptr;
    const cudaError_t status = cudaMallocHost(&pointer, bytes);
    if (status != cudaSuccess) {
      cudaGetLastError();
      throw CudaError("CUDA error " + describe(status) + " in cudaMallocHost of " +
                      std::to_string(bytes) +
                      " bytes of page-locked host memory for the constants of a CUDA graph");
    }
    return reinterpret_cast<std::uintptr_t>(pointer);
  }

  int device_index_;
  GraphArenaPlan device_plan_;
  GraphArenaPlan host_plan_;
};

// The captures running on this thread, by device index, and the orphaned arenas whose last block
// was released during a capture (their memory is freed once no capture runs here, since freeing
// it waits for the device).
struct CaptureState {
  GraphArena* arena = nullptr;
  std::vector<void*> deferred_frees;  // pool memory released during the capture
};
struct ThreadCaptures {
  std::vector<CaptureState> by_device;
  int active = 0;
  std::vector<GraphArena*> arenas_to_free;
};

// Made on a thread's first capture and never destroyed, and reached through a plain pointer:
// tensors are released during static destruction too, after the thread's thread_local objects
// with destructors are gone, and every release asks here. A thread that never captures has none.
thread_local ThreadCaptures* thread_capture_state = nullptr;

ThreadCaptures& thread_captures() {
  if (thread_capture_state == nullptr) thread_capture_state = new ThreadCaptures();
  return *thread_capture_state;
}

int active_captures() {
  return thread_capture_state != nullptr ? thread_capture_state->active : 0;
}

CaptureState* capture_state(int device_index) {
  if (thread_capture_state == nullptr) return nullptr;
  ThreadCaptures& captures = *thread_capture_state;
  const auto index = static_cast<std::size_t>(device_index);
  if (device_index < 0 || index >= captures.by_device.size()) return nullptr;
  CaptureState& state = captures.by_device[index];
  return state.arena != nullptr ? &state : nullptr;
}

// Frees an arena's chunks and the arena. Waits for the device first: replays, or eager work on
// blocks the graph handed out, may still be running. Errors are ignored (called from destructors
// and releases; a failing device reports itself elsewhere).
void free_arena(GraphArena* arena) noexcept {
  std::vector<GraphArenaPlan::Chunk> device_chunks, host_chunks;
  {
    Registry& shared = registry();
    std::lock_guard<std::mutex> lock(shared.mutex);
    device_chunks = arena->device_plan().chunks();
    host_chunks = arena->host_plan().chunks();
    // Unregistered before the memory goes back, so that a new chunk at the same address never
    // meets a stale range.
    for (const auto& chunk : device_chunks) shared.chunks.erase(chunk.base);
  }
  int previous_device = -1;
  bool failed = cudaGetDevice(&previous_device) != cudaSuccess;
  failed |= cudaSetDevice(arena->device_index()) != cudaSuccess;
  failed |= cudaDeviceSynchronize() != cudaSuccess;
  for (const auto& chunk : device_chunks) {
    failed |= cudaFree(reinterpret_cast<void*>(chunk.base)) != cudaSuccess;
  }
  for (const auto& chunk : host_chunks) {
    failed |= cudaFreeHost(reinterpret_cast<void*>(chunk.base)) != cudaSuccess;
  }
  if (previous_device >= 0) failed |= cudaSetDevice(previous_device) != cudaSuccess;
  if (failed) cudaGetLastError();
  registry().arenas.fetch_sub(1, std::memory_order_acq_rel);
  delete arena;
}

// An orphaned arena with no block held: freed now, or after the capture running on this thread
// (a device synchronisation inside it would break the capture).
void dispose(GraphArena* arena) noexcept {
  if (active_captures() > 0) {
    thread_capture_state->arenas_to_free.push_back(arena);
  } else {
    free_arena(arena);
  }
}

// Its owner lets go of the arena: no more allocations, and its memory goes once no block is held.
void give_up(GraphArena* arena) noexcept {
  bool free_now = false;
  {
    Registry& shared = registry();
    std::lock_guard<std::mutex> lock(shared.mutex);
    arena->orphaned = true;
    arena->device_plan().seal();
    arena->host_plan().seal();
    free_now = arena->device_plan().live_blocks() == 0;
  }
  if (free_now) dispose(arena);
}

}  // namespace

CapturedGraph capture_graph(int device_index, void* stream, const std::function<void()>& body) {
  const std::string where = "CUDA graph capture on " + device_name(device_index);
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  const auto cuda_stream = static_cast<cudaStream_t>(stream);
  ThreadCaptures& captures = thread_captures();
  const auto index = static_cast<std::size_t>(device_index);
  if (index >= captures.by_device.size()) captures.by_device.resize(index + 1);
  if (captures.by_device[index].arena != nullptr) {
    throw std::logic_error(where +
                           " inside another capture on the same device and thread: "
                           "captures do not nest");
  }

  auto* arena = new GraphArena(device_index);
  registry().arenas.fetch_add(1, std::memory_order_acq_rel);
  const cudaError_t begun = cudaStreamBeginCapture(cuda_stream, cudaStreamCaptureModeRelaxed);
  if (begun != cudaSuccess) {
    cudaGetLastError();
    free_arena(arena);
    throw GraphCaptureError(where + ": cudaStreamBeginCapture failed: " + describe(begun) + "; " +
                            kCaptureAdvice);
  }
  captures.by_device[index].arena = arena;
  captures.by_device[index].deferred_frees.clear();
  ++captures.active;

  std::string failure;  // empty while everything went through
  try {
    body();
  } catch (const std::exception& error) {
    failure = std::string("the captured work failed: ") + error.what();
  } catch (...) {
    failure = "the captured work threw an exception that is not a std::exception";
  }

  // The capture ends whatever happened, so that the stream works again.
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(cuda_stream, &graph);
  if (ended != cudaSuccess) {
    cudaGetLastError();
    if (failure.empty()) {
      failure = "cudaStreamEndCapture failed: " + describe(ended) +
                " (an operation inside the step invalidated the capture)";
    }
  }
  // Looked up again: a capture on another device inside the body may have grown the vector.
  CaptureState& state = captures.by_device[index];
  state.arena = nullptr;
  --captures.active;
  {
    Registry& shared = registry();
    std::lock_guard<std::mutex> lock(shared.mutex);
    arena->device_plan().seal();
    arena->host_plan().seal();
  }
  // Pool memory released during the capture: freed now, on the stream, outside the graph.
  std::vector<void*> deferred_frees = std::move(state.deferred_frees);
  state.deferred_frees.clear();
  for (void* pointer : deferred_frees) {
    const cudaError_t freed = cudaFreeAsync(pointer, cuda_stream);
    if (freed != cudaSuccess) {
      cudaGetLastError();
      if (failure.empty()) {
        failure = "cudaFreeAsync of memory released inside the step, after the capture, failed: " +
                  describe(freed);
      }
    }
  }
  if (captures.active == 0) {
    for (GraphArena* orphan : std::exchange(captures.arenas_to_free, {})) free_arena(orphan);
  }

  std::size_t node_count = 0;
  cudaGraphExec_t exec = nullptr;
  if (failure.empty()) {
    const cudaError_t counted = cudaGraphGetNodes(graph, nullptr, &node_count);
    if (counted != cudaSuccess) {
      cudaGetLastError();
      failure = "cudaGraphGetNodes failed: " + describe(counted);
    }
  }
  if (failure.empty()) {
    const cudaError_t instantiated = cudaGraphInstantiate(&exec, graph, 0);
    if (instantiated != cudaSuccess) {
      cudaGetLastError();
      exec = nullptr;
      failure = "cudaGraphInstantiate failed: " + describe(instantiated);
    }
  }
  // The executable graph does not need the graph it was made from.
  if (graph != nullptr && cudaGraphDestroy(graph) != cudaSuccess) cudaGetLastError();
  if (!failure.empty()) {
    give_up(arena);
    // The failed calls are reported in the message; left as the thread's last error, the next
    // launch check (cudaPeekAtLastError) of eager work would throw them again.
    cudaGetLastError();
    throw GraphCaptureError(where + ": " + failure + "; " + kCaptureAdvice);
  }
  return {exec, arena, node_count};
}

void launch_graph(int device_index, void* exec, void* stream) {
  DRGRAD_CUDA_CHECK(cudaSetDevice(device_index));
  const cudaError_t launched =
      cudaGraphLaunch(static_cast<cudaGraphExec_t>(exec), static_cast<cudaStream_t>(stream));
  if (launched != cudaSuccess) {
    cudaGetLastError();
    throw GraphCaptureError("cudaGraphLaunch of a captured step on " + device_name(device_index) +
                            " failed: " + describe(launched));
  }
}

void destroy_graph(int device_index, void* exec, void* arena) noexcept {
  if (exec != nullptr) {
    // A replay still in flight is not cut short: the driver frees the executable graph after it.
    int previous_device = -1;
    bool failed = cudaGetDevice(&previous_device) != cudaSuccess;
    failed |= cudaSetDevice(device_index) != cudaSuccess;
    failed |= cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(exec)) != cudaSuccess;
    if (previous_device >= 0) failed |= cudaSetDevice(previous_device) != cudaSuccess;
    if (failed) cudaGetLastError();
  }
  if (arena != nullptr) give_up(static_cast<GraphArena*>(arena));
}

std::size_t graph_memory_bytes(const void* arena) {
  Registry& shared = registry();
  std::lock_guard<std::mutex> lock(shared.mutex);
  return static_cast<const GraphArena*>(arena)->device_plan().chunk_bytes();
}

bool capturing(int device_index) {
  return active_captures() > 0 && capture_state(device_index) != nullptr;
}

void* graph_allocate(int device_index, std::size_t bytes) {
  if (bytes == 0 || active_captures() == 0) return nullptr;
  CaptureState* state = capture_state(device_index);
  if (state == nullptr) return nullptr;
  Registry& shared = registry();
  std::lock_guard<std::mutex> lock(shared.mutex);
  return reinterpret_cast<void*>(state->arena->device_plan().allocate(bytes));
}

bool graph_release(int device_index, void* pointer) {
  Registry& shared = registry();
  const bool capture_here = active_captures() > 0;
  if (shared.arenas.load(std::memory_order_acquire) == 0 && !capture_here) return false;
  CaptureState* state = capture_here ? capture_state(device_index) : nullptr;

  const auto address = reinterpret_cast<std::uintptr_t>(pointer);
  GraphArena* owner = nullptr;
  bool last_block_of_orphan = false;
  {
    std::lock_guard<std::mutex> lock(shared.mutex);
    auto chunk = shared.chunks.upper_bound(address);
    if (chunk != shared.chunks.begin()) {
      --chunk;
      if (address < chunk->second.end) owner = chunk->second.arena;
    }
    if (owner != nullptr) {
      // Back to the free list only for the capture running here: its later allocations are
      // ordered after this block's last use on the one captured stream. Any other graph's replays
      // keep using the block, so it is never handed out again.
      CaptureState* owner_state = capture_here ? capture_state(owner->device_index()) : nullptr;
      const bool reuse = owner_state != nullptr && owner_state->arena == owner;
      owner->device_plan().release(address, reuse);
      last_block_of_orphan = owner->orphaned && owner->device_plan().live_blocks() == 0;
    }
  }
  if (owner != nullptr) {
    if (last_block_of_orphan) dispose(owner);
    return true;
  }
  if (state != nullptr) {
    state->deferred_frees.push_back(pointer);
    return true;
  }
  return false;
}

const void* graph_host_constant(int device_index, const void* source, std::size_t bytes) {
  CaptureState* state = capture_state(device_index);
  if (state == nullptr) {
    throw std::logic_error("graph_host_constant on " + device_name(device_index) +
                           " outside a capture");
  }
  void* constant = nullptr;
  {
    Registry& shared = registry();
    std::lock_guard<std::mutex> lock(shared.mutex);
    constant = reinterpret_cast<void*>(state->arena->host_plan().allocate(bytes));
  }
  std::memcpy(constant, source, bytes);
  return constant;
}

}  // namespace drgrad::kernels::cuda
