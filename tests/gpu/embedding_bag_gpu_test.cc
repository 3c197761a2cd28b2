// GPU tests of kernels/embedding/embedding_bag.h: forward and backward against the CPU twin on
// random bags (empty bags, repeated rows, dimensions on both sides of a warp, padded output rows),
// and the backward pass repeating bit for bit.
#include <catch2/catch.hpp>

#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "kernels/embedding/embedding_bag.h"
#include "tests/gpu/kernel_gpu_support.h"

namespace drgrad::gpu_test {
namespace {

using kernels::Pooling;

// A batch of bags over a table of `table_rows` rows: bag sizes from 0 to max_bag, rows drawn with
// repeats, plus the per-row occurrence lists the backward pass takes (rows in increasing order,
// each row's samples in batch order, a sample listed once per time its bag names the row).
struct Bags {
  std::vector<std::int64_t> rows, offsets;
  std::vector<std::int64_t> occurrence_offsets, occurrence_samples;
  std::int64_t num_unique = 0;
};

Bags random_bags(std::mt19937& random, std::int64_t batch, std::int64_t table_rows, int max_bag) {
  std::uniform_int_distribution<int> bag_size(0, max_bag);
  std::uniform_int_distribution<std::int64_t> row(0, table_rows - 1);
  Bags bags;
  bags.offsets.push_back(0);
  std::map<std::int64_t, std::vector<std::int64_t>> samples_of_row;
  for (std::int64_t b = 0; b < batch; ++b) {
    const int size = b == 0 ? 0 : bag_size(random);  // the first bag is always empty
    for (int i = 0; i < size; ++i) {
      const std::int64_t r = row(random);
      bags.rows.push_back(r);
      samples_of_row[r].push_back(b);
    }
    bags.offsets.push_back(static_cast<std::int64_t>(bags.rows.size()));
  }
  bags.occurrence_offsets.push_back(0);
  for (const auto& [table_row, samples] : samples_of_row) {
    bags.occurrence_samples.insert(bags.occurrence_samples.end(), samples.begin(), samples.end());
    bags.occurrence_offsets.push_back(static_cast<std::int64_t>(bags.occurrence_samples.size()));
  }
  bags.num_unique = static_cast<std::int64_t>(samples_of_row.size());
  return bags;
}

const char* pooling_name(Pooling pooling) {
  return pooling == Pooling::kSum ? "sum" : "mean";
}

}  // namespace

TEST_CASE("embedding_bag_forward on CUDA matches the CPU twin", "[gpu][embedding]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  const std::int64_t table_rows = 101;
  for (std::int64_t dim : {1, 7, 32, 45, 130}) {
    for (std::int64_t batch : {1, 17, 300}) {
      for (Pooling pooling : {Pooling::kSum, Pooling::kMean}) {
        const Bags bags = random_bags(random, batch, table_rows, 6);
        const auto table = random_floats(random, table_rows * dim, -1.f, 1.f);
        const std::int64_t out_stride = dim + 3;
        // The padding between output rows holds the same value on both sides and must survive.
        std::vector<float> out_cpu(batch * out_stride, 7.5f);
        DeviceBuffer<float> table_device(table), out_device(out_cpu);
        DeviceBuffer<std::int64_t> rows_device(bags.rows), offsets_device(bags.offsets);
        kernels::embedding_bag_forward(cuda_context(), table_device.data(), dim, rows_device.data(),
                                       offsets_device.data(), batch, pooling, out_device.data(),
                                       out_stride);
        kernels::cpu::embedding_bag_forward(table.data(), dim, bags.rows.data(),
                                            bags.offsets.data(), batch, pooling, out_cpu.data(),
                                            out_stride);
        check_close(out_device.download(), out_cpu, kFloatTolerance,
                    "forward dim " + std::to_string(dim) + " batch " + std::to_string(batch) + " " +
                        pooling_name(pooling));
      }
    }
  }
}

TEST_CASE("embedding_bag_backward on CUDA matches the CPU twin and repeats bit for bit",
          "[gpu][embedding]") {
  DRGRAD_REQUIRE_GPU();
  auto random = fresh_generator();
  for (std::int64_t dim : {1, 7, 32, 45, 130}) {
    for (std::int64_t batch : {1, 17, 300}) {
      for (Pooling pooling : {Pooling::kSum, Pooling::kMean}) {
        // A small table, so that rows recur across many samples.
        const Bags bags = random_bags(random, batch, 13, 6);
        const std::int64_t out_stride = dim + 2;
        const auto d_out = random_floats(random, batch * out_stride, -1.f, 1.f);
        std::vector<float> gradients_cpu(bags.num_unique * dim, 0.f);
        // Poisoned: every element must be written.
        DeviceBuffer<float> gradients_device(
            std::vector<float>(gradients_cpu.size(), std::numeric_limits<float>::quiet_NaN()));
        DeviceBuffer<float> d_out_device(d_out);
        DeviceBuffer<std::int64_t> offsets_device(bags.offsets),
            occurrence_offsets_device(bags.occurrence_offsets),
            occurrence_samples_device(bags.occurrence_samples);
        const auto run_cuda = [&] {
          kernels::embedding_bag_backward(
              cuda_context(), d_out_device.data(), out_stride, dim, offsets_device.data(), pooling,
              occurrence_offsets_device.data(), occurrence_samples_device.data(), bags.num_unique,
              gradients_device.data());
          return gradients_device.download();
        };
        const auto first = run_cuda();
        kernels::cpu::embedding_bag_backward(d_out.data(), out_stride, dim, bags.offsets.data(),
                                             pooling, bags.occurrence_offsets.data(),
                                             bags.occurrence_samples.data(), bags.num_unique,
                                             gradients_cpu.data());
        check_close(first, gradients_cpu, kFloatTolerance,
                    "backward dim " + std::to_string(dim) + " batch " + std::to_string(batch) +
                        " " + pooling_name(pooling) + ", " + std::to_string(bags.num_unique) +
                        " distinct rows");
        CHECK(run_cuda() == first);
      }
    }
  }
}

TEST_CASE("embedding bag on CUDA with an all-empty batch writes zeros and no gradients",
          "[gpu][embedding]") {
  DRGRAD_REQUIRE_GPU();
  const std::int64_t dim = 5, batch = 4;
  const std::vector<std::int64_t> offsets(batch + 1, 0);
  DeviceBuffer<float> table(std::vector<float>(3 * dim, 1.f));
  DeviceBuffer<float> out(std::vector<float>(batch * dim, -3.f));
  DeviceBuffer<std::int64_t> rows(std::vector<std::int64_t>{}), offsets_device(offsets);
  kernels::embedding_bag_forward(cuda_context(), table.data(), dim, rows.data(),
                                 offsets_device.data(), batch, Pooling::kMean, out.data(), dim);
  CHECK(out.download() == std::vector<float>(batch * dim, 0.f));
  // No touched rows: nothing to launch, nothing written.
  DeviceBuffer<std::int64_t> occurrence_offsets(std::vector<std::int64_t>{0});
  kernels::embedding_bag_backward(cuda_context(), out.data(), dim, dim, offsets_device.data(),
                                  Pooling::kMean, occurrence_offsets.data(), rows.data(), 0,
                                  table.data());
  CHECK(table.download() == std::vector<float>(3 * dim, 1.f));
}

}  // namespace drgrad::gpu_test
