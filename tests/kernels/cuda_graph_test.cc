// What CudaGraph (kernels/core/cuda_graph.h) does without a GPU: capturing on the CPU is refused
// with an error that says graphs need CUDA and names the setting, the body never runs, an empty
// graph refuses to launch, and HostReadback::expect_copy leaves a CPU readback as it was.
#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>
#include <utility>

#include "kernels/core/cuda_graph.h"
#include "kernels/core/stream.h"

namespace drgrad::kernels {
namespace {

TEST_CASE("capturing a CUDA graph on the CPU is refused with a clear error", "[graph]") {
  bool ran = false;
  try {
    CudaGraph::capture(Device::cpu(), nullptr, [&] { ran = true; });
    FAIL("capture on the CPU returned");
  } catch (const NotSupportedError& error) {
    const std::string message = error.what();
    INFO(message);
    CHECK(message.find("need a CUDA device") != std::string::npos);
    CHECK(message.find("training.cuda_graph = false") != std::string::npos);
  }
  CHECK_FALSE(ran);
  CHECK_FALSE(capturing(Device::cpu()));
  CHECK_FALSE(capturing(Device::cuda(0)));  // no capture runs on this thread
}

TEST_CASE("an empty CUDA graph refuses to launch and moves as empty", "[graph]") {
  CudaGraph graph;
  CHECK(graph.empty());
  CHECK(graph.memory_bytes() == 0);
  CHECK(graph.node_count() == 0);
  CHECK_THROWS_AS(graph.launch(nullptr), std::logic_error);
  CudaGraph moved(std::move(graph));
  CHECK(moved.empty());
  CudaGraph assigned;
  assigned = std::move(moved);
  CHECK(assigned.empty());
}

TEST_CASE("expect_copy leaves a CPU readback's buffer and state as they were", "[graph]") {
  HostReadback readback(Device::cpu(), sizeof(int));
  const int value = 42;
  readback.start(&value, sizeof(int));
  readback.expect_copy();  // a CPU copy is never replayed
  CHECK_FALSE(readback.pending());
  CHECK(readback.ready());
  CHECK(*static_cast<const int*>(readback.wait()) == 42);
}

}  // namespace
}  // namespace drgrad::kernels
