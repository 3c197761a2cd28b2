// The embedding backward's plan per training step, three ways (model.embedding_backward): the
// host plan (sort on the host, upload the plan), the device plan (CUB on the device, or its CPU
// twin) and the atomic backward, each followed by the backward it feeds, for every slot of an
// industrial-shaped batch (8192 samples x 26 one-id slots over 10,000 rows, dimension 16).
// Prints the configuration, the median milliseconds per step of each phase, and a check of the
// results against the host plan made in the same run.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_flags.h"
#include "bench/gpu_bench_support.h"
#include "kernels/core/memory.h"
#include "kernels/core/stream.h"
#include "kernels/embedding/embedding_bag.h"
#include "kernels/embedding/embedding_plan.h"

namespace {

namespace kernels = drgrad::kernels;
namespace bench = drgrad::bench;

struct Options {
  std::string device = "cpu";
  std::int64_t batch = 8192;
  std::int64_t slots = 26;
  std::int64_t rows = 10000;  // vocabulary of every slot
  std::int64_t ids_per_sample = 1;
  std::int64_t dim = 16;
  int warmup = 2;
  int repeats = 9;
  std::string json_path;
};

const char* kUsage =
    "usage: embedding_plan_bench [options]\n"
    "  --device cpu|cuda|cuda:N  (cpu; a missing device: SKIPPED, exit 0)\n"
    "  --batch N                 samples per batch (8192)\n"
    "  --slots N                 sparse slots (26)\n"
    "  --rows N                  table rows of each slot (10000)\n"
    "  --ids N                   ids per sample and slot (1)\n"
    "  --dim N                   embedding dimension (16)\n"
    "  --warmup N                untimed steps first (2)\n"
    "  --repeats N               timed steps; median (9)\n"
    "  --json FILE               append one JSON line per measurement\n";

Options parse_arguments(int argc, char** argv) {
  Options options;
  bench::parse_flags(argc, argv, kUsage, [&](const std::string& flag, const std::string& value) {
    if (flag == "--device") {
      options.device = value;
    } else if (flag == "--batch") {
      options.batch = std::stoll(value);
    } else if (flag == "--slots") {
      options.slots = std::stoll(value);
    } else if (flag == "--rows") {
      options.rows = std::stoll(value);
    } else if (flag == "--ids") {
      options.ids_per_sample = std::stoll(value);
    } else if (flag == "--dim") {
      options.dim = std::stoll(value);
    } else if (flag == "--warmup") {
      options.warmup = std::stoi(value);
    } else if (flag == "--repeats") {
      options.repeats = std::stoi(value);
    } else if (flag == "--json") {
      options.json_path = value;
    } else {
      return false;
    }
    return true;
  });
  if (options.batch < 1 || options.slots < 1 || options.rows < 1 || options.ids_per_sample < 1 ||
      options.dim < 1 || options.repeats < 1 || options.warmup < 0) {
    throw std::invalid_argument("every size must be at least 1 (warmup at least 0)\n" +
                                std::string(kUsage));
  }
  return options;
}

// `count` int64 or float values on `device`, released at scope exit.
template <typename T>
class Buffer {
 public:
  Buffer(kernels::Device device, std::size_t count)
      : device_(device),
        count_(count),
        data_(static_cast<T*>(
            kernels::allocate(device, std::max<std::size_t>(count, 1) * sizeof(T)))) {}
  Buffer(kernels::Device device, const std::vector<T>& host) : Buffer(device, host.size()) {
    upload(host);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept
      : device_(other.device_), count_(other.count_), data_(std::exchange(other.data_, nullptr)) {}
  ~Buffer() {
    try {
      kernels::release(device_, data_);
    } catch (...) {  // a destructor must not throw
    }
  }
  T* data() const { return data_; }
  void upload(const std::vector<T>& host, std::size_t count = SIZE_MAX) {
    const std::size_t n = std::min(host.size(), count);
    kernels::copy_bytes(device_, data_, kernels::Device::cpu(), host.data(), n * sizeof(T));
  }
  std::vector<T> download(std::size_t count) const {
    std::vector<T> host(count);
    kernels::copy_bytes(kernels::Device::cpu(), host.data(), device_, data_, count * sizeof(T));
    return host;
  }

 private:
  kernels::Device device_;
  std::size_t count_;
  T* data_;
};

// One slot's batch: its rows and offsets on the host and on the device, and the plan's arrays.
struct Slot {
  std::vector<std::int64_t> rows, offsets;
  Buffer<std::int64_t> rows_device, offsets_device;
  Buffer<std::int64_t> distinct_rows, occurrence_offsets, occurrence_samples, num_distinct,
      distinct_index_of_position;
  Slot(kernels::Device device, std::vector<std::int64_t> slot_rows,
       std::vector<std::int64_t> slot_offsets)
      : rows(std::move(slot_rows)),
        offsets(std::move(slot_offsets)),
        rows_device(device, rows),
        offsets_device(device, offsets),
        distinct_rows(device, rows.size()),
        occurrence_offsets(device, rows.size() + 1),
        occurrence_samples(device, rows.size()),
        num_distinct(device, 1),
        distinct_index_of_position(device, rows.size()) {}
  std::int64_t num_ids() const { return static_cast<std::int64_t>(rows.size()); }
  kernels::EmbeddingBackwardPlan plan(bool with_positions) const {
    kernels::EmbeddingBackwardPlan view;
    view.distinct_rows = distinct_rows.data();
    view.occurrence_offsets = occurrence_offsets.data();
    view.occurrence_samples = occurrence_samples.data();
    view.num_distinct = num_distinct.data();
    if (with_positions) view.distinct_index_of_position = distinct_index_of_position.data();
    return view;
  }
};

struct PhaseTimes {
  std::vector<double> plan, backward;
};

double milliseconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

}  // namespace

int main(int argc, char** argv) {
  // Whole lines reach the log even when a timeout kills the run (stdout is a pipe or file there).
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    const Options options = parse_arguments(argc, argv);
    const kernels::Device device = kernels::parse_device(options.device);
    if (bench::skip_without_device(device, "embedding_plan_bench")) return 0;
    const kernels::Context ctx{device, nullptr};
    const auto wait_for_device = [&] {
      kernels::synchronize_stream(device, kernels::current_stream(device));
    };

    std::printf("# embedding_plan_bench, %s\n", bench::utc_now().c_str());
    std::printf("# device: %s; build: %s; host threads: %u\n", device.to_string().c_str(),
                bench::build_flags().c_str(), std::thread::hardware_concurrency());
#if defined(DRGRAD_WITH_CUDA)
    if (device.is_cuda()) bench::describe_device(device.index).print(device.index);
#endif
    std::printf(
        "# batch %lld, %lld slots of %lld rows, %lld id(s) per sample and slot, dim %lld: %lld "
        "ids per step; warmup %d, median of %d steps\n",
        static_cast<long long>(options.batch), static_cast<long long>(options.slots),
        static_cast<long long>(options.rows), static_cast<long long>(options.ids_per_sample),
        static_cast<long long>(options.dim),
        static_cast<long long>(options.batch * options.slots * options.ids_per_sample),
        options.warmup, options.repeats);
    std::printf(
        "# host_plan: the engine's host plan (the CPU twin of the plan on host memory) and the "
        "upload of its arrays; device_plan: build_embedding_backward_plan on the device; "
        "backward: the deterministic backward (atomic for fast_nondeterministic), for the device "
        "plans at the capacity (every id distinct) with the count read on the device, as the "
        "engine runs it (nothing is read back). Times per step, all slots.\n");

    // Uniform ids, as the industrial generator draws them.
    std::mt19937 random(11);
    std::uniform_int_distribution<std::int64_t> row_of(0, options.rows - 1);
    std::vector<Slot> slots;
    const std::int64_t ids = options.batch * options.ids_per_sample;
    for (std::int64_t s = 0; s < options.slots; ++s) {
      std::vector<std::int64_t> rows(static_cast<std::size_t>(ids)), offsets;
      for (auto& row : rows) row = row_of(random);
      for (std::int64_t b = 0; b <= options.batch; ++b)
        offsets.push_back(b * options.ids_per_sample);
      slots.emplace_back(device, std::move(rows), std::move(offsets));
    }
    const std::int64_t width = options.slots * options.dim;
    std::uniform_real_distribution<float> value(-1.f, 1.f);
    std::vector<float> upstream(static_cast<std::size_t>(options.batch * width));
    for (float& v : upstream) v = value(random);
    const Buffer<float> d_out(device, upstream);
    std::vector<Buffer<float>> gradients;
    for (std::int64_t s = 0; s < options.slots; ++s) {
      gradients.emplace_back(device, static_cast<std::size_t>(ids * options.dim));
    }
    wait_for_device();

    // Host-side plan scratch, as the engine keeps vectors per batch.
    std::vector<std::int64_t> host_distinct(ids), host_offsets(ids + 1), host_samples(ids);
    std::vector<std::int64_t> host_counts(options.slots);

    const auto run_step = [&](const std::string& method, PhaseTimes* times) {
      const bool atomic = method == "fast_nondeterministic";
      std::vector<std::int64_t> counts(options.slots);
      auto start = std::chrono::steady_clock::now();
      if (method == "host_plan") {
        for (std::int64_t s = 0; s < options.slots; ++s) {
          Slot& slot = slots[s];
          std::int64_t distinct = 0;
          kernels::EmbeddingBackwardPlan view;
          view.distinct_rows = host_distinct.data();
          view.occurrence_offsets = host_offsets.data();
          view.occurrence_samples = host_samples.data();
          view.num_distinct = &distinct;
          kernels::cpu::build_embedding_backward_plan(slot.rows.data(), slot.offsets.data(),
                                                      options.batch, slot.num_ids(), options.rows,
                                                      view);
          slot.occurrence_offsets.upload(host_offsets, distinct + 1);
          slot.occurrence_samples.upload(host_samples);
          slot.distinct_rows.upload(host_distinct, distinct);
          counts[s] = distinct;
        }
      } else {
        for (const Slot& slot : slots) {
          kernels::build_embedding_backward_plan(ctx, slot.rows_device.data(),
                                                 slot.offsets_device.data(), options.batch,
                                                 slot.num_ids(), options.rows, slot.plan(atomic));
        }
      }
      wait_for_device();
      const double plan_ms = milliseconds_since(start);
      start = std::chrono::steady_clock::now();
      for (std::int64_t s = 0; s < options.slots; ++s) {
        const Slot& slot = slots[s];
        const float* slot_upstream = d_out.data() + s * options.dim;
        if (atomic) {
          kernels::embedding_bag_backward_atomic(
              ctx, slot_upstream, width, options.dim, slot.offsets_device.data(), options.batch,
              kernels::Pooling::kSum, slot.distinct_index_of_position.data(), slot.num_ids(),
              slot.num_ids(), gradients[s].data());
        } else if (method == "device_plan") {
          kernels::embedding_bag_backward_with_device_count(
              ctx, slot_upstream, width, options.dim, slot.offsets_device.data(),
              kernels::Pooling::kSum, slot.occurrence_offsets.data(),
              slot.occurrence_samples.data(), slot.num_distinct.data(), slot.num_ids(),
              gradients[s].data());
        } else {
          kernels::embedding_bag_backward(
              ctx, slot_upstream, width, options.dim, slot.offsets_device.data(),
              kernels::Pooling::kSum, slot.occurrence_offsets.data(),
              slot.occurrence_samples.data(), counts[s], gradients[s].data());
        }
      }
      wait_for_device();
      const double backward_ms = milliseconds_since(start);
      if (times != nullptr) {
        times->plan.push_back(plan_ms);
        times->backward.push_back(backward_ms);
      }
      if (method == "host_plan") host_counts = counts;
    };
    // The first count rows of each slot's gradient (the device plans' counts read here, after the
    // timed steps).
    const auto gradients_of_all_slots = [&](const std::string& method) {
      std::vector<std::vector<float>> all;
      for (std::int64_t s = 0; s < options.slots; ++s) {
        if (method != "host_plan") host_counts[s] = slots[s].num_distinct.download(1)[0];
        all.push_back(
            gradients[s].download(static_cast<std::size_t>(host_counts[s] * options.dim)));
      }
      return all;
    };

    bench::JsonLines json(options.json_path);
    std::printf("%-22s %10s %10s %10s  %s\n", "method", "plan_ms", "backward", "total_ms",
                "check against host_plan");
    std::vector<std::vector<float>> reference;
    for (const std::string method : {"host_plan", "device_plan", "fast_nondeterministic"}) {
      for (int i = 0; i < options.warmup; ++i) run_step(method, nullptr);
      PhaseTimes times;
      for (int i = 0; i < options.repeats; ++i) run_step(method, &times);
      const auto result = gradients_of_all_slots(method);
      std::string check = "reference";
      if (method == "host_plan") {
        reference = result;
      } else {
        double worst = 0;
        bool same_bits = result == reference;
        for (std::size_t s = 0; s < result.size() && !same_bits; ++s) {
          if (result[s].size() != reference[s].size()) {
            worst = INFINITY;
            break;
          }
          for (std::size_t i = 0; i < result[s].size(); ++i) {
            worst = std::max(worst, double(std::abs(result[s][i] - reference[s][i])));
          }
        }
        check = same_bits ? "same bits"
                          : "max |difference| " + std::to_string(worst) +
                                (method == "device_plan" ? " (MISMATCH: should be same bits)" : "");
      }
      std::vector<double> totals;
      for (int i = 0; i < options.repeats; ++i) {
        totals.push_back(times.plan[i] + times.backward[i]);
      }
      const double plan = bench::median(times.plan), backward = bench::median(times.backward),
                   total = bench::median(totals);
      std::printf("%-22s %10.3f %10.3f %10.3f  %s\n", method.c_str(), plan, backward, total,
                  check.c_str());
      json.write("\"bench\": \"embedding_plan\", \"method\": " + bench::json_string(method) +
                 ", \"device\": " + bench::json_string(device.to_string()) + ", \"batch\": " +
                 std::to_string(options.batch) + ", \"slots\": " + std::to_string(options.slots) +
                 ", \"rows\": " + std::to_string(options.rows) +
                 ", \"ids_per_sample\": " + std::to_string(options.ids_per_sample) + ", \"dim\": " +
                 std::to_string(options.dim) + ", \"plan_ms\": " + std::to_string(plan) +
                 ", \"backward_ms\": " + std::to_string(backward) + ", \"total_ms\": " +
                 std::to_string(total) + ", \"check\": " + bench::json_string(check) +
                 ", \"time\": " + bench::json_string(bench::utc_now()));
    }
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "embedding_plan_bench: %s\n", error.what());
    return 1;
  }
}
