// Additions to gpu_test_support.h for the kernel tests (dense, embedding, gate, vector): a
// freshly seeded generator whose seed goes into the log, and a Catch2 check that a CUDA twin's
// output matches its CPU twin's element by element.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "tests/gpu/gpu_test_support.h"

namespace drgrad::gpu_test {

// fp32 element-wise kernels differ from their CPU twin by a few roundings at most.
inline constexpr double kFloatTolerance = 1e-5;
// cuBLAS picks its own blocking and summation order, so its products differ from OpenBLAS's by
// more than a few roundings.
inline constexpr double kGemmTolerance = 1e-4;

// A generator seeded afresh for every run (inputs are never the same twice); the seed is logged
// with every later failure of the test case so that it can be replayed.
inline std::mt19937 fresh_generator() {
  const unsigned seed = std::random_device{}();
  UNSCOPED_INFO("random seed " << seed);
  return std::mt19937(seed);
}

// Every element within tolerance * (1 + |expected|) of the CPU twin's; NaN never passes.
inline void check_close(const std::vector<float>& cuda_result, const std::vector<float>& cpu_result,
                        double tolerance, const std::string& what) {
  const Closeness closeness = compare_close(cuda_result, cpu_result, tolerance, tolerance);
  INFO(what << " (" << cuda_result.size() << " elements, tolerance " << tolerance
            << "): " << closeness);
  CHECK_FALSE(closeness.sizes_differ);
  CHECK(closeness.mismatches == 0);
}

}  // namespace drgrad::gpu_test
