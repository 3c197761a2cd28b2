// GPU tests of kernels/core/cuda_graph.h: a captured step runs nothing until launched, then gives
// the same bits as the same ops run eagerly, reads new values of its persistent inputs on every
// replay while uploads made inside it stay constants; memory allocated in the step comes from the
// graph's own memory and is reused within the step; copies to host memory and host
// synchronisations fail the capture with GraphCaptureError and leave the stream usable; memory a
// destroyed graph handed out stays valid until released (also when released inside another
// capture); a HostReadback started in the step lands after each replay.
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <vector>

#include "kernels/core/cuda_check.h"
#include "kernels/core/cuda_graph.h"
#include "kernels/core/memory.h"
#include "kernels/core/stream.h"
#include "kernels/vector/vector_ops.h"
#include "tests/gpu/kernel_gpu_support.h"

namespace drgrad::gpu_test {

namespace {

constexpr std::size_t kMiB = std::size_t(1) << 20;

// A stream of its own, current for the test (the legacy default stream cannot be captured), and
// the context that launches on it.
struct CaptureFixture {
  kernels::Device device = kernels::Device::cuda(0);
  kernels::Stream stream{device};
  kernels::CurrentStreamGuard guard{device, stream.get()};
  kernels::Context context() const {
    kernels::Context ctx;
    ctx.device = device;
    ctx.stream = stream.get();
    return ctx;
  }
  void synchronize() const { kernels::synchronize_stream(device, stream.get()); }
};

std::size_t free_device_bytes() {
  std::size_t free_bytes = 0, total_bytes = 0;
  DRGRAD_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return free_bytes;
}

}  // namespace

TEST_CASE("a captured step replays the eager result, reads new inputs and keeps its constants",
          "[gpu][graph]") {
  DRGRAD_REQUIRE_GPU();
  CaptureFixture fixture;
  const kernels::Device device = fixture.device;
  const kernels::Context ctx = fixture.context();
  auto random = fresh_generator();
  const std::int64_t n = 100003;
  const std::size_t bytes = n * sizeof(float);

  DeviceBuffer<float> input(random_floats(random, n, -1.f, 1.f));  // persistent, read by the step
  DeviceBuffer<float> output(std::vector<float>(n, -7.f));         // persistent, written by it
  std::vector<float> constant = random_floats(random, n, -1.f, 1.f);
  const std::vector<float> captured_constant = constant;

  // output = 0.5 * (2 input + constant) * input, through scratch allocated and released in the
  // step. The second scratch has the first's size and is allocated after its release.
  void* first_scratch = nullptr;
  void* second_scratch = nullptr;
  auto step = [&](float* out) {
    auto* uploaded = static_cast<float*>(kernels::allocate(device, bytes));
    kernels::copy_bytes(device, uploaded, kernels::Device::cpu(), constant.data(), bytes);
    auto* sum = static_cast<float*>(kernels::allocate(device, bytes));
    kernels::zero_bytes(device, sum, bytes);
    kernels::axpy(ctx, n, 2.f, input.data(), sum);
    kernels::axpy(ctx, n, 1.f, static_cast<const float*>(uploaded), sum);
    kernels::release(device, uploaded);
    auto* copied = static_cast<float*>(kernels::allocate(device, bytes));
    kernels::copy_rows(ctx, static_cast<const float*>(sum), n, copied, n, 1, n, false);
    kernels::multiply(ctx, n, 0.5f, static_cast<const float*>(copied),
                      static_cast<const float*>(input.data()), out);
    kernels::release(device, sum);
    kernels::release(device, copied);
    first_scratch = uploaded;
    second_scratch = copied;
  };
  auto eager = [&](const std::vector<float>& with_constant) {
    const std::vector<float> saved = constant;
    constant = with_constant;
    DeviceBuffer<float> expected(n);
    step(expected.data());
    constant = saved;
    return expected.download();
  };

  kernels::CudaGraph graph =
      kernels::CudaGraph::capture(device, fixture.stream.get(), [&] { step(output.data()); });
  CHECK_FALSE(graph.empty());
  CHECK_FALSE(kernels::capturing(device));
  CHECK(graph.node_count() > 0);
  CHECK(graph.memory_bytes() >= 64 * kMiB);
  // A block released in the step is handed to the next allocation of its size in the step.
  CHECK(second_scratch == first_scratch);
  // Nothing ran yet.
  CHECK(output.download() == std::vector<float>(n, -7.f));

  // The host copy of the constant changes after the capture: the graph keeps what it captured.
  for (float& value : constant) value += 1000.f;
  graph.launch(fixture.stream.get());
  CHECK(output.download() == eager(captured_constant));

  // A new persistent input, uploaded outside the step: the replay reads it.
  input.upload(random_floats(random, n, -2.f, 2.f));
  graph.launch(fixture.stream.get());
  graph.launch(fixture.stream.get());  // replays are idempotent here
  CHECK(output.download() == eager(captured_constant));
}

TEST_CASE("memory allocated before a capture and released in it is freed after the capture",
          "[gpu][graph]") {
  DRGRAD_REQUIRE_GPU();
  CaptureFixture fixture;
  const kernels::Device device = fixture.device;
  void* before = kernels::allocate(device, 4 * kMiB);  // pool memory
  DeviceBuffer<float> output(std::vector<float>(1024, 0.f));
  DeviceBuffer<float> ones(std::vector<float>(1024, 1.f));
  kernels::CudaGraph graph = kernels::CudaGraph::capture(device, fixture.stream.get(), [&] {
    kernels::release(device, before);  // deferred to the end of the capture
    kernels::axpy(fixture.context(), 1024, 3.f, static_cast<const float*>(ones.data()),
                  output.data());
  });
  fixture.synchronize();  // the deferred free ran on the stream without an error
  graph.launch(fixture.stream.get());
  graph.launch(fixture.stream.get());
  CHECK(output.download() == std::vector<float>(1024, 6.f));
  // The pool still works after the deferred free.
  void* after = kernels::allocate(device, 4 * kMiB);
  kernels::zero_bytes(device, after, 4 * kMiB);
  kernels::release(device, after);
  fixture.synchronize();
}

TEST_CASE("a copy to host memory or a host synchronisation fails the capture, not the stream",
          "[gpu][graph]") {
  DRGRAD_REQUIRE_GPU();
  CaptureFixture fixture;
  const kernels::Device device = fixture.device;
  const kernels::Context ctx = fixture.context();
  DeviceBuffer<float> values(std::vector<float>(256, 2.f));

  std::vector<float> host(256, 0.f);
  try {
    kernels::CudaGraph::capture(device, fixture.stream.get(), [&] {
      kernels::copy_bytes(kernels::Device::cpu(), host.data(), device, values.data(),
                          256 * sizeof(float));
    });
    FAIL("a step copying to host memory was captured");
  } catch (const kernels::GraphCaptureError& error) {
    const std::string message = error.what();
    INFO(message);
    CHECK(message.find("copy to host memory cannot be inside a captured step") !=
          std::string::npos);
    CHECK(message.find("training.cuda_graph = false") != std::string::npos);
  }
  CHECK_FALSE(kernels::capturing(device));

  // dot() waits for its result on the host: CUDA refuses the synchronisation inside the capture.
  try {
    kernels::CudaGraph::capture(device, fixture.stream.get(), [&] {
      kernels::dot(ctx, 256, static_cast<const float*>(values.data()),
                   static_cast<const float*>(values.data()));
    });
    FAIL("a step synchronising with the host was captured");
  } catch (const kernels::GraphCaptureError& error) {
    const std::string message = error.what();
    INFO(message);
    CHECK(message.find("CUDA graph capture on cuda:0") != std::string::npos);
    CHECK(message.find("training.cuda_graph = false") != std::string::npos);
  }
  CHECK_FALSE(kernels::capturing(device));
  CHECK(cudaPeekAtLastError() == cudaSuccess);

  // The stream runs eager work again, allocations included.
  DeviceBuffer<float> sum(std::vector<float>(256, 1.f));
  kernels::axpy(ctx, 256, 0.5f, static_cast<const float*>(values.data()), sum.data());
  CHECK(sum.download() == std::vector<float>(256, 2.f));
  CHECK(kernels::dot(ctx, 256, static_cast<const float*>(values.data()),
                     static_cast<const float*>(values.data())) == 1024.0);
}

TEST_CASE("memory of a destroyed graph stays valid until its last block is released",
          "[gpu][graph]") {
  DRGRAD_REQUIRE_GPU();
  CaptureFixture fixture;
  const kernels::Device device = fixture.device;
  const std::size_t count = 4096;
  std::vector<float> values(count);
  for (std::size_t i = 0; i < count; ++i) values[i] = static_cast<float>(i) * 0.25f;

  void* kept = nullptr;
  void* kept_for_second_capture = nullptr;
  std::size_t graph_bytes = 0;
  {
    kernels::CudaGraph graph = kernels::CudaGraph::capture(device, fixture.stream.get(), [&] {
      kept = kernels::allocate(device, count * sizeof(float));
      kept_for_second_capture = kernels::allocate(device, count * sizeof(float));
      kernels::zero_bytes(device, kept, count * sizeof(float));
    });
    graph.launch(fixture.stream.get());
    graph_bytes = graph.memory_bytes();
  }  // the graph is gone; its memory is held by `kept` and `kept_for_second_capture`
  REQUIRE(graph_bytes >= 64 * kMiB);
  kernels::copy_bytes(device, kept, kernels::Device::cpu(), values.data(), count * sizeof(float));
  std::vector<float> back(count);
  kernels::copy_bytes(kernels::Device::cpu(), back.data(), device, kept, count * sizeof(float));
  CHECK(back == values);
  kernels::release(device, kept);  // not the last block: nothing is freed yet

  // The last block is released inside another capture (as when a step of a new shape drops the
  // previous graph's caches): the memory goes back after that capture ends.
  DeviceBuffer<float> output(std::vector<float>(count, 0.f));
  DeviceBuffer<float> ones(std::vector<float>(count, 1.f));
  fixture.synchronize();
  const std::size_t free_before = free_device_bytes();
  kernels::CudaGraph second = kernels::CudaGraph::capture(device, fixture.stream.get(), [&] {
    kernels::release(device, kept_for_second_capture);
    kernels::axpy(fixture.context(), static_cast<std::int64_t>(count), 1.f,
                  static_cast<const float*>(ones.data()), output.data());
  });
  second.launch(fixture.stream.get());
  CHECK(output.download() == std::vector<float>(count, 1.f));
  // The first graph's chunks went back to the device; the second holds its own.
  const std::size_t free_after = free_device_bytes();
  INFO("free before " << free_before << ", after " << free_after << ", first graph's memory "
                      << graph_bytes << ", second's " << second.memory_bytes());
  CHECK(free_after + second.memory_bytes() >= free_before + graph_bytes - 8 * kMiB);
}

TEST_CASE("a readback started in a captured step lands after every replay", "[gpu][graph]") {
  DRGRAD_REQUIRE_GPU();
  CaptureFixture fixture;
  const kernels::Device device = fixture.device;
  DeviceBuffer<float> counter(std::vector<float>(1, 0.f));
  DeviceBuffer<float> one(std::vector<float>(1, 1.f));
  kernels::HostReadback readback(device, sizeof(float));

  kernels::CudaGraph graph = kernels::CudaGraph::capture(device, fixture.stream.get(), [&] {
    kernels::axpy(fixture.context(), 1, 1.f, static_cast<const float*>(one.data()), counter.data());
    readback.start(counter.data(), sizeof(float));
  });
  // Pending from the capture on: the launch right after it is waited for like an eager step.
  CHECK(readback.pending());
  graph.launch(fixture.stream.get());
  CHECK(*static_cast<const float*>(readback.wait()) == 1.f);
  CHECK_FALSE(readback.pending());
  for (int replay = 2; replay <= 4; ++replay) {
    graph.launch(fixture.stream.get());
    readback.expect_copy();
    CHECK(readback.pending());
    CHECK(*static_cast<const float*>(readback.wait()) == static_cast<float>(replay));
  }

  // A copy still pending from outside cannot be waited for inside a capture.
  readback.start(counter.data(), sizeof(float));
  REQUIRE(readback.pending());
  CHECK_THROWS_AS(kernels::CudaGraph::capture(device, fixture.stream.get(),
                                              [&] { readback.start(counter.data(), 4); }),
                  kernels::GraphCaptureError);
  CHECK(*static_cast<const float*>(readback.wait()) == 4.f);
}

TEST_CASE("capture refuses a stream that is not current and the legacy default stream",
          "[gpu][graph]") {
  DRGRAD_REQUIRE_GPU();
  CaptureFixture fixture;
  kernels::Stream other(fixture.device);
  bool ran = false;
  CHECK_THROWS_AS(kernels::CudaGraph::capture(fixture.device, other.get(), [&] { ran = true; }),
                  std::invalid_argument);
  CHECK_THROWS_AS(kernels::CudaGraph::capture(fixture.device, nullptr, [&] { ran = true; }),
                  std::invalid_argument);
  CHECK_FALSE(ran);
}

}  // namespace drgrad::gpu_test
