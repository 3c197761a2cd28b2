// The device-independent side of CudaGraph: argument checks, the refusal on the CPU and in builds
// without CUDA, and ownership (the CUDA calls are in cuda_graph_cuda.cu).
#include "kernels/core/cuda_graph.h"

#include <string>
#include <utility>

#include "kernels/core/stream.h"

namespace drgrad::kernels {

CudaGraph CudaGraph::capture(Device device, void* stream, const std::function<void()>& body) {
  if (!device.is_cuda()) {
    throw NotSupportedError("CudaGraph::capture on " + device.to_string() +
                            ": CUDA graphs need a CUDA device; set training.cuda_graph = false "
                            "or train on device = \"cuda\"");
  }
#if defined(DRGRAD_WITH_CUDA)
  if (stream == nullptr) {
    throw std::invalid_argument("CudaGraph::capture on " + device.to_string() +
                                ": the legacy default stream cannot be captured; make a "
                                "kernels::Stream current (CurrentStreamGuard) and capture that");
  }
  if (stream != current_stream(device)) {
    throw std::invalid_argument(
        "CudaGraph::capture on " + device.to_string() +
        ": the stream to capture is not the calling thread's current stream on the device, so "
        "the step's allocations, copies and frees (which use the current stream) would not be "
        "captured; make it current first (CurrentStreamGuard)");
  }
  const cuda::CapturedGraph captured = cuda::capture_graph(device.index, stream, body);
  CudaGraph graph;
  graph.device_ = device;
  graph.exec_ = captured.exec;
  graph.arena_ = captured.arena;
  graph.node_count_ = captured.node_count;
  return graph;
#else
  static_cast<void>(stream);
  static_cast<void>(body);
  throw NotSupportedError(
      "CudaGraph::capture: CUDA graphs need the CUDA backend, and this drgrad build has none; "
      "set training.cuda_graph = false, or rebuild with -DDRGRAD_CUDA=ON");
#endif
}

void CudaGraph::launch(void* stream) const {
  if (empty()) throw std::logic_error("CudaGraph::launch on an empty graph: capture one first");
  DRGRAD_CUDA_TWIN(cuda::launch_graph(device_.index, exec_, stream));
}

std::size_t CudaGraph::memory_bytes() const {
  if (arena_ == nullptr) return 0;
#if defined(DRGRAD_WITH_CUDA)
  return cuda::graph_memory_bytes(arena_);
#else
  return 0;
#endif
}

CudaGraph::~CudaGraph() {
#if defined(DRGRAD_WITH_CUDA)
  if (exec_ != nullptr || arena_ != nullptr) cuda::destroy_graph(device_.index, exec_, arena_);
#endif
}

CudaGraph::CudaGraph(CudaGraph&& other) noexcept {
  swap(other);
}

CudaGraph& CudaGraph::operator=(CudaGraph&& other) noexcept {
  CudaGraph moved(std::move(other));
  swap(moved);
  return *this;
}

void CudaGraph::swap(CudaGraph& other) noexcept {
  std::swap(device_, other.device_);
  std::swap(exec_, other.exec_);
  std::swap(arena_, other.arena_);
  std::swap(node_count_, other.node_count_);
}

bool capturing(Device device) {
#if defined(DRGRAD_WITH_CUDA)
  return device.is_cuda() && device.index >= 0 && cuda::capturing(device.index);
#else
  static_cast<void>(device);
  return false;
#endif
}

}  // namespace drgrad::kernels
