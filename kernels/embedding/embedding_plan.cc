// CPU twin of the embedding backward plan (a stable sort of id positions by row, as the engine's
// host plan does) and the dispatch to the CUDA twin.
#include "kernels/embedding/embedding_plan.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

namespace drgrad::kernels {
namespace {

void check_plan_arguments(std::int64_t batch, std::int64_t num_ids, std::int64_t table_rows,
                          const EmbeddingBackwardPlan& plan) {
  if (batch < 0 || num_ids < 0 || table_rows < 1 || (num_ids > 0 && batch == 0)) {
    throw std::invalid_argument(
        "build_embedding_backward_plan: batch " + std::to_string(batch) + ", num_ids " +
        std::to_string(num_ids) + ", table_rows " + std::to_string(table_rows) +
        ": need batch >= 0, num_ids >= 0, table_rows >= 1 and a batch for any ids");
  }
  if (plan.occurrence_offsets == nullptr || plan.num_distinct == nullptr ||
      (num_ids > 0 && (plan.distinct_rows == nullptr || plan.occurrence_samples == nullptr))) {
    throw std::invalid_argument(
        "build_embedding_backward_plan: distinct_rows, occurrence_offsets, occurrence_samples "
        "and num_distinct must all be given (only distinct_index_of_position may be null, and "
        "the per-id arrays when there are no ids)");
  }
}

}  // namespace

namespace cpu {

void build_embedding_backward_plan(const std::int64_t* rows, const std::int64_t* offsets,
                                   std::int64_t batch, std::int64_t num_ids,
                                   std::int64_t table_rows, const EmbeddingBackwardPlan& plan) {
  check_plan_arguments(batch, num_ids, table_rows, plan);
  const std::int64_t first = batch > 0 ? offsets[0] : 0, last = batch > 0 ? offsets[batch] : 0;
  if (first != 0 || last != num_ids) {
    throw std::invalid_argument("build_embedding_backward_plan: offsets run from " +
                                std::to_string(first) + " to " + std::to_string(last) +
                                "; they must run from 0 to num_ids = " + std::to_string(num_ids));
  }
  for (std::int64_t i = 0; i < num_ids; ++i) {
    if (rows[i] < 0 || rows[i] >= table_rows) {
      throw std::out_of_range("build_embedding_backward_plan: row " + std::to_string(rows[i]) +
                              " at id position " + std::to_string(i) + " is outside [0, " +
                              std::to_string(table_rows) + ")");
    }
  }
  // Positions ordered by row, stably. A table not much larger than the batch gets a counting
  // sort (O(ids + table rows)), a larger one a merge sort; both give the same order.
  std::vector<std::int64_t> order(static_cast<std::size_t>(num_ids));
  if (table_rows <= 2 * num_ids + 1024) {
    std::vector<std::int64_t> starts(static_cast<std::size_t>(table_rows) + 1, 0);
    for (std::int64_t i = 0; i < num_ids; ++i) ++starts[rows[i] + 1];
    for (std::size_t r = 1; r < starts.size(); ++r) starts[r] += starts[r - 1];
    for (std::int64_t i = 0; i < num_ids; ++i) order[starts[rows[i]]++] = i;
  } else {
    std::iota(order.begin(), order.end(), std::int64_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [rows](std::int64_t a, std::int64_t b) { return rows[a] < rows[b]; });
  }
  std::vector<std::int64_t> sample_of_position(static_cast<std::size_t>(num_ids));
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t i = offsets[b]; i < offsets[b + 1]; ++i) sample_of_position[i] = b;
  }
  std::int64_t distinct = 0;
  for (std::int64_t k = 0; k < num_ids; ++k) {
    const std::int64_t position = order[k];
    const std::int64_t row = rows[position];
    if (k == 0 || rows[order[k - 1]] != row) {
      plan.distinct_rows[distinct] = row;
      plan.occurrence_offsets[distinct] = k;
      ++distinct;
    }
    plan.occurrence_samples[k] = sample_of_position[position];
    if (plan.distinct_index_of_position != nullptr) {
      plan.distinct_index_of_position[position] = distinct - 1;
    }
  }
  for (std::int64_t u = distinct; u <= num_ids; ++u) plan.occurrence_offsets[u] = num_ids;
  *plan.num_distinct = distinct;
}

}  // namespace cpu

void build_embedding_backward_plan(const Context& ctx, const std::int64_t* rows,
                                   const std::int64_t* offsets, std::int64_t batch,
                                   std::int64_t num_ids, std::int64_t table_rows,
                                   const EmbeddingBackwardPlan& plan) {
  check_plan_arguments(batch, num_ids, table_rows, plan);
  if (ctx.device.is_cuda()) {
    DRGRAD_CUDA_TWIN(
        cuda::build_embedding_backward_plan(ctx, rows, offsets, batch, num_ids, table_rows, plan));
    return;
  }
  cpu::build_embedding_backward_plan(rows, offsets, batch, num_ids, table_rows, plan);
}

}  // namespace drgrad::kernels
