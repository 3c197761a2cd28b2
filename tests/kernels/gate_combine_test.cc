// The fused softmax gate (kernels::gate_combine_*) on the CPU against the two separate ops it
// replaces (softmax_rows_* and gated_combination_*), bit for bit in float and double: several
// shapes (batch 1, one expert, dim not a multiple of a warp), a selection naming an expert twice,
// accumulation into d_experts, and the stacked per-task backward against one backward per task.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/gate/gate.h"

namespace {

namespace kernels = drgrad::kernels;
using kernels::ExpertSelection;

ExpertSelection make_selection(const std::vector<int>& indices) {
  ExpertSelection selection;
  for (int index : indices) selection.index[selection.count++] = index;
  return selection;
}

template <typename T>
std::vector<T> random_values(std::mt19937& random, std::size_t size, double low, double high) {
  std::uniform_real_distribution<double> distribution(low, high);
  std::vector<T> values(size);
  for (T& value : values) value = static_cast<T>(distribution(random));
  return values;
}

// Exact equality element by element (the fused CPU op must reproduce the separate ops' bits).
template <typename T>
void check_identical(const std::vector<T>& fused, const std::vector<T>& separate,
                     const std::string& what) {
  REQUIRE(fused.size() == separate.size());
  std::size_t differing = 0;
  for (std::size_t i = 0; i < fused.size(); ++i) {
    if (!(fused[i] == separate[i])) ++differing;
  }
  INFO(what << ": " << differing << " of " << fused.size() << " elements differ");
  CHECK(differing == 0);
}

struct Shape {
  std::int64_t batch, dim;
  std::vector<int> selected;
  int total_experts;
};

std::string shape_text(const Shape& shape) {
  std::string text =
      "batch " + std::to_string(shape.batch) + " dim " + std::to_string(shape.dim) + " experts {";
  for (std::size_t i = 0; i < shape.selected.size(); ++i) {
    if (i > 0) text += ',';
    text += std::to_string(shape.selected[i]);
  }
  return text + "} of " + std::to_string(shape.total_experts);
}

const std::vector<Shape>& shapes() {
  static const std::vector<Shape> all = {
      {1, 1, {0}, 1},          // batch 1, one expert, dim 1
      {1, 37, {2, 0, 1}, 3},   // batch 1, dim not a multiple of 32
      {7, 16, {0}, 4},         // one expert out of several
      {19, 70, {4, 0, 2}, 6},  // a PLE-style subset out of order
      {23, 33, {1, 3, 1}, 5},  // an expert named twice
      {64, 5, {0, 1, 2, 3, 4, 5, 6, 7}, 8},
      {3, 9, std::vector<int>(40, 0), 1},  // more columns than a warp, all the same expert
  };
  return all;
}

template <typename T>
void check_fused_forward_and_backward() {
  std::mt19937 random(20261203);
  const auto ctx = kernels::Context::cpu();
  for (const Shape& shape : shapes()) {
    const ExpertSelection selection = make_selection(shape.selected);
    const std::int64_t batch = shape.batch, dim = shape.dim, count = selection.count;
    const std::string what = shape_text(shape);
    const auto experts = random_values<T>(random, shape.total_experts * batch * dim, -1, 1);
    const auto logits = random_values<T>(random, batch * count, -4, 4);
    const auto d_out = random_values<T>(random, batch * dim, -1, 1);
    // d_experts accumulates (several gates read the same experts): start from random values.
    const auto d_experts_start = random_values<T>(random, experts.size(), -1, 1);

    std::vector<T> p_separate(logits.size()), out_separate(batch * dim);
    kernels::softmax_rows_forward<T>(ctx, logits.data(), p_separate.data(), batch, count);
    kernels::gated_combination_forward<T>(ctx, experts.data(), p_separate.data(), selection, batch,
                                          dim, out_separate.data());
    std::vector<T> p_fused(logits.size()), out_fused(batch * dim);
    kernels::gate_combine_forward<T>(ctx, logits.data(), experts.data(), selection, batch, dim,
                                     p_fused.data(), out_fused.data());
    check_identical(p_fused, p_separate, what + " probabilities");
    check_identical(out_fused, out_separate, what + " out");
    for (std::int64_t b = 0; b < batch; ++b) {
      T total = 0;
      for (std::int64_t c = 0; c < count; ++c) total += p_fused[b * count + c];
      CHECK(std::abs(double(total) - 1.0) < 1e-5);
    }

    // In place: the probabilities overwrite the logits.
    auto logits_in_place = logits;
    std::vector<T> out_in_place(batch * dim);
    kernels::gate_combine_forward<T>(ctx, logits_in_place.data(), experts.data(), selection, batch,
                                     dim, logits_in_place.data(), out_in_place.data());
    check_identical(logits_in_place, p_separate, what + " probabilities in place");
    check_identical(out_in_place, out_separate, what + " out in place");

    auto d_experts_separate = d_experts_start;
    std::vector<T> d_p(logits.size()), d_logits_separate(logits.size());
    kernels::gated_combination_backward<T>(ctx, experts.data(), p_separate.data(), d_out.data(),
                                           selection, batch, dim, d_experts_separate.data(),
                                           d_p.data());
    kernels::softmax_rows_backward<T>(ctx, p_separate.data(), d_p.data(), d_logits_separate.data(),
                                      batch, count);
    auto d_experts_fused = d_experts_start;
    std::vector<T> d_logits_fused(logits.size(), std::numeric_limits<T>::quiet_NaN());
    kernels::gate_combine_backward<T>(ctx, experts.data(), p_fused.data(), d_out.data(), selection,
                                      batch, dim, d_experts_fused.data(), d_logits_fused.data());
    check_identical(d_experts_fused, d_experts_separate, what + " d_experts");
    check_identical(d_logits_fused, d_logits_separate, what + " d_logits");
    // The softmax gradient sums to zero over each row.
    for (std::int64_t b = 0; b < batch; ++b) {
      double total = 0, scale = 0;
      for (std::int64_t c = 0; c < count; ++c) {
        total += double(d_logits_fused[b * count + c]);
        scale += std::abs(double(d_logits_fused[b * count + c]));
      }
      CHECK(std::abs(total) <= 1e-5 * (1.0 + scale));
    }
  }
}

template <typename T>
void check_stacked_backward() {
  std::mt19937 random(3);
  const auto ctx = kernels::Context::cpu();
  for (const Shape& shape : shapes()) {
    for (std::int64_t tasks : {1, 3}) {
      const ExpertSelection selection = make_selection(shape.selected);
      const std::int64_t batch = shape.batch, dim = shape.dim, count = selection.count;
      const std::int64_t total = shape.total_experts;
      const std::string what = shape_text(shape) + " tasks " + std::to_string(tasks);
      const auto experts = random_values<T>(random, total * batch * dim, -1, 1);
      const auto logits = random_values<T>(random, batch * count, -4, 4);
      std::vector<T> p(logits.size()), out(batch * dim);
      kernels::gate_combine_forward<T>(ctx, logits.data(), experts.data(), selection, batch, dim,
                                       p.data(), out.data());
      const auto d_out = random_values<T>(random, tasks * batch * dim, -1, 1);
      const auto d_experts_start = random_values<T>(random, tasks * experts.size(), -1, 1);

      auto d_experts_stacked = d_experts_start;
      std::vector<T> d_logits_stacked(tasks * batch * count);
      kernels::gate_combine_backward_stacked<T>(ctx, experts.data(), p.data(), d_out.data(),
                                                selection, tasks, total, batch, dim,
                                                d_experts_stacked.data(), d_logits_stacked.data());
      auto d_experts_each = d_experts_start;
      std::vector<T> d_logits_each(tasks * batch * count);
      for (std::int64_t k = 0; k < tasks; ++k) {
        kernels::gate_combine_backward<T>(ctx, experts.data(), p.data(),
                                          d_out.data() + k * batch * dim, selection, batch, dim,
                                          d_experts_each.data() + k * total * batch * dim,
                                          d_logits_each.data() + k * batch * count);
      }
      check_identical(d_experts_stacked, d_experts_each, what + " d_experts");
      check_identical(d_logits_stacked, d_logits_each, what + " d_logits");
    }
  }
}

}  // namespace

TEST_CASE("fused gate forward and backward equal softmax then combination, bit for bit (float)",
          "[gate]") {
  check_fused_forward_and_backward<float>();
}

TEST_CASE("fused gate forward and backward equal softmax then combination, bit for bit (double)",
          "[gate]") {
  check_fused_forward_and_backward<double>();
}

TEST_CASE("fused gate stacked backward equals one fused backward per task", "[gate]") {
  check_stacked_backward<float>();
  check_stacked_backward<double>();
}
