// The embedding bag's backward plan built where the ids already are: from a batch's table rows
// and bag offsets, the distinct rows (ascending) and, for each, the samples it occurs in. On CUDA
// it is a CUB radix sort of (row, position) pairs, a run-length encoding and a scan, so that a
// training step need not sort ids on the host and upload the result.
#pragma once

#include <cstdint>

#include "kernels/core/device.h"

namespace drgrad::kernels {

// Caller-owned arrays on the context's device, sized for the worst case (every id distinct), so
// that nothing on the host needs the number of distinct rows. For a batch of num_ids ids:
//   distinct_rows       [num_ids]      the first *num_distinct entries: the distinct rows,
//                                      ascending; the rest unspecified.
//   occurrence_offsets  [num_ids + 1]  occurrences of distinct row u are
//                                      occurrence_samples[occurrence_offsets[u] ..
//                                      occurrence_offsets[u + 1]); every entry from
//                                      *num_distinct on equals num_ids.
//   occurrence_samples  [num_ids]      the sample (bag) of each occurrence; a row's occurrences
//                                      in increasing id position (stable), a sample listed once
//                                      per time its bag names the row: exactly the host plan.
//   num_distinct        [1]            the number of distinct rows.
//   distinct_index_of_position [num_ids] or null: for each id position, the index u of its row in
//                                      distinct_rows (what embedding_bag_backward_atomic reads).
struct EmbeddingBackwardPlan {
  std::int64_t* distinct_rows = nullptr;
  std::int64_t* occurrence_offsets = nullptr;
  std::int64_t* occurrence_samples = nullptr;
  std::int64_t* num_distinct = nullptr;
  std::int64_t* distinct_index_of_position = nullptr;
};

// Builds the plan of the bags rows[offsets[b] .. offsets[b + 1]), b < batch, with
// offsets[0] = 0 and num_ids = offsets[batch] ids (passed because the CUDA twin cannot read it
// without a host round trip). Every row must lie in [0, table_rows): the CUDA radix sort looks at
// the low bits that cover table_rows only; the CPU twin checks and throws std::out_of_range. Throws
// std::invalid_argument for negative sizes, offsets that do not run from 0 to num_ids (CPU), a
// missing output array (the per-id ones may be null when num_ids is 0), or (CUDA) more than
// 2^31 - 1 ids, CUB's run-length encoding limit. On CUDA it runs on the context's stream without
// synchronising the host; its scratch (about 40 bytes per id plus CUB's temporary storage) comes
// from the stream-ordered pool and returns to it when the stream gets there.
void build_embedding_backward_plan(const Context& ctx, const std::int64_t* rows,
                                   const std::int64_t* offsets, std::int64_t batch,
                                   std::int64_t num_ids, std::int64_t table_rows,
                                   const EmbeddingBackwardPlan& plan);

namespace cpu {
void build_embedding_backward_plan(const std::int64_t* rows, const std::int64_t* offsets,
                                   std::int64_t batch, std::int64_t num_ids,
                                   std::int64_t table_rows, const EmbeddingBackwardPlan& plan);
}  // namespace cpu

namespace cuda {
void build_embedding_backward_plan(const Context& ctx, const std::int64_t* rows,
                                   const std::int64_t* offsets, std::int64_t batch,
                                   std::int64_t num_ids, std::int64_t table_rows,
                                   const EmbeddingBackwardPlan& plan);
}  // namespace cuda

}  // namespace drgrad::kernels
