// CUDA twin of the per-task gradient pass with its Gram matrix: a hand-tiled kernel in which each
// block computes one tile of dW for ALL K tasks, so the K values of every position sit in
// registers together and the block's share of the Gram matrix is reduced before anything is
// written; the alternative cuBLAS batched product + separate one-pass Gram; and the device-side
// Gram accumulation.
//
// Cost of one call (K tasks, X [B, in], dY [K, B, out], fp32 data, Gram in double):
//   products:  2 K B in out flops (dW) + K B out adds (db)
//   Gram:      K (K + 1) in out flops in double, counted as K^2 in out (each product and add)
//   bytes, fused kernel: reads X once per column tile (B in * ceil(out / 32) * 4 bytes, mostly
//     from L2) and dY once per row tile (K B out * ceil(in / 32) * 4 bytes, likewise); reads dW
//     only when beta != 0 (K in out * 4); writes dW and db once (K (in out + out) * 4) and
//     K (K + 1) / 2 doubles per block of partial Gram sums.
//   bytes, batched path: the same product traffic inside cuBLAS, plus one more read of the K
//     gradients (K (in out + out) * 4 bytes) by the Gram kernel. That read is what the fused
//     kernel saves; for K = 4, in = 512, out = 256 it is 2.1 MB per call.
//
// Tiles: 32 x 32 outputs per block, 256 threads as 16 x 16, each thread 2 x 2 positions for all
// K tasks (4 K fp32 accumulators, 32 at K = 8, plus K (K + 1) / 2 double Gram sums), and the
// batch walked in chunks of 16 rows staged in shared memory (X: 16 x 32 floats, dY: K x 16 x 32
// floats, 18 KB at K = 8). The tile is small because a block cannot split the batch (the
// reduction dimension) across blocks: the Gram needs each dW value complete inside one block, so
// the only parallelism is the in x out tiles; 32 x 32 gives 128 blocks for a 512 x 256 layer
// (one wave on a 132-SM H200, one block per SM). cuBLAS can split the reduction (split-K) and
// uses tensor-core-free but far better tuned SGEMM tiles, so on large shapes this kernel will be
// slower than cuBLAS at the product itself; whether the saved read pays for that is a
// measurement (TaskGramPath picks; docs/gpu.md).
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/core/memory.h"
#include "kernels/dense/gemm.h"
#include "kernels/multitask/task_gradient_gram.h"
#include "kernels/multitask/task_gram_arithmetic.h"

namespace drgrad::kernels::cuda {
namespace {

constexpr int kTile = 32;                            // outputs per block along in and out
constexpr int kThreadsPerSide = 16;                  // 16 x 16 = kBlockSize threads
constexpr int kPerThread = kTile / kThreadsPerSide;  // 2 x 2 positions per thread
constexpr int kBatchChunk = 16;                      // batch rows staged per step
constexpr int kWarps = kBlockSize / 32;
// Blocks of the one-pass Gram kernel; fixed, so the grouping of terms never changes.
constexpr int kGramBlocks = 256;

static_assert(kThreadsPerSide * kThreadsPerSide == kBlockSize, "one thread per 2 x 2 positions");

// Sums pairs[0..Pairs) over the block in a fixed shape (warp shuffles, then the warps in order)
// and writes them to block_partials[0..Pairs). Every thread of the block must call it.
template <int Pairs>
__device__ void reduce_pairs_over_block(double (&pairs)[Pairs], double* block_partials) {
  __shared__ double warp_sums[kWarps][Pairs];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int p = 0; p < Pairs; ++p) {
    double value = pairs[p];
    for (int offset = 16; offset > 0; offset /= 2) {
      value += __shfl_down_sync(0xffffffffu, value, offset);
    }
    if (lane == 0) warp_sums[warp][p] = value;
  }
  __syncthreads();
  for (int p = threadIdx.x; p < Pairs; p += blockDim.x) {
    double total = 0.0;
    for (int w = 0; w < kWarps; ++w) total += warp_sums[w][p];
    block_partials[p] = total;
  }
  __syncthreads();  // warp_sums may be reused by a later call
}

// One block: the 32 x 32 tile (i0.., j0..) of dW_k = beta dW_k + X^T dY_k for every task k, its
// partial Gram sums, and, in the first row of blocks, the bias gradients of its 32 columns.
template <int K>
__global__ void fused_task_gradients_kernel(const float* input, const float* upstream,
                                            std::int64_t batch, std::int64_t in, std::int64_t out,
                                            float beta, float* weight_gradients,
                                            float* bias_gradients, bool with_gram,
                                            double* weight_partials, double* bias_partials) {
  constexpr int kPairs = task_gram::pair_count(K);
  __shared__ float input_tile[kBatchChunk][kTile];
  __shared__ float upstream_tile[K][kBatchChunk][kTile];
  const int tx = threadIdx.x % kThreadsPerSide, ty = threadIdx.x / kThreadsPerSide;
  const std::int64_t i0 = std::int64_t(blockIdx.y) * kTile, j0 = std::int64_t(blockIdx.x) * kTile;
  // Threads with ty == 0 in the first row of blocks also own the bias of columns tx, tx + 16.
  const bool bias_owner = bias_gradients != nullptr && blockIdx.y == 0 && ty == 0;

  float products[K][kPerThread][kPerThread] = {};
  float column_totals[K][kPerThread] = {};
  for (std::int64_t b0 = 0; b0 < batch; b0 += kBatchChunk) {
    for (int e = threadIdx.x; e < kBatchChunk * kTile; e += kBlockSize) {
      const int row = e / kTile, column = e % kTile;
      const std::int64_t b = b0 + row, i = i0 + column;
      input_tile[row][column] = b < batch && i < in ? input[b * in + i] : 0.f;
    }
    for (int e = threadIdx.x; e < K * kBatchChunk * kTile; e += kBlockSize) {
      const int k = e / (kBatchChunk * kTile), row = (e / kTile) % kBatchChunk, column = e % kTile;
      const std::int64_t b = b0 + row, j = j0 + column;
      upstream_tile[k][row][column] =
          b < batch && j < out ? upstream[(k * batch + b) * out + j] : 0.f;
    }
    __syncthreads();
#pragma unroll 4
    for (int row = 0; row < kBatchChunk; ++row) {
      float x[kPerThread];
#pragma unroll
      for (int r = 0; r < kPerThread; ++r) x[r] = input_tile[row][ty + r * kThreadsPerSide];
#pragma unroll
      for (int k = 0; k < K; ++k) {
#pragma unroll
        for (int c = 0; c < kPerThread; ++c) {
          const float y = upstream_tile[k][row][tx + c * kThreadsPerSide];
#pragma unroll
          for (int r = 0; r < kPerThread; ++r) products[k][r][c] = fmaf(x[r], y, products[k][r][c]);
          if (bias_owner) column_totals[k][c] += y;
        }
      }
    }
    __syncthreads();
  }

  double pairs[kPairs] = {};
  float values[K];
#pragma unroll
  for (int r = 0; r < kPerThread; ++r) {
#pragma unroll
    for (int c = 0; c < kPerThread; ++c) {
      const std::int64_t i = i0 + ty + r * kThreadsPerSide, j = j0 + tx + c * kThreadsPerSide;
      if (i >= in || j >= out) continue;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        float* target = weight_gradients + (k * in + i) * out + j;
        values[k] = beta == 0.f ? products[k][r][c] : fmaf(beta, *target, products[k][r][c]);
        *target = values[k];
      }
      if (with_gram) task_gram::add_position_products(values, 1, K, pairs);
    }
  }
  const std::size_t block = std::size_t(blockIdx.y) * gridDim.x + blockIdx.x;
  if (with_gram) reduce_pairs_over_block<kPairs>(pairs, weight_partials + block * kPairs);

  if (bias_gradients == nullptr || blockIdx.y != 0) return;  // uniform over the block
  double bias_pairs[kPairs] = {};
  if (bias_owner) {
#pragma unroll
    for (int c = 0; c < kPerThread; ++c) {
      const std::int64_t j = j0 + tx + c * kThreadsPerSide;
      if (j >= out) continue;
#pragma unroll
      for (int k = 0; k < K; ++k) {
        float* target = bias_gradients + k * out + j;
        values[k] = beta == 0.f ? column_totals[k][c] : fmaf(beta, *target, column_totals[k][c]);
        *target = values[k];
      }
      if (with_gram) task_gram::add_position_products(values, 1, K, bias_pairs);
    }
  }
  if (with_gram)
    reduce_pairs_over_block<kPairs>(bias_pairs, bias_partials + std::size_t(blockIdx.x) * kPairs);
}

// One pass over gradients [K, n] for K <= kMaxFusedGramTasks: every thread keeps all K (K + 1)
// / 2 sums of its positions; kGramBlocks blocks, each writing its partial sums.
template <int K>
__global__ void gram_partials_kernel(const float* gradients, std::int64_t n, double* partials) {
  constexpr int kPairs = task_gram::pair_count(K);
  double pairs[kPairs] = {};
  for (std::int64_t x = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; x < n;
       x += std::int64_t(gridDim.x) * blockDim.x) {
    task_gram::add_position_products(gradients + x, n, K, pairs);
  }
  reduce_pairs_over_block<kPairs>(pairs, partials + blockIdx.x * kPairs);
}

// More tasks than registers allow: blockIdx.y is the pair, kGramBlocks blocks per pair, each
// reading the pair's two rows (K (K + 1) / 2 reads of the matrix, not one).
__global__ void gram_partials_by_pair_kernel(const float* gradients, int tasks, std::int64_t n,
                                             double* partials) {
  int row = 0, column = 0;
  task_gram::pair_position(blockIdx.y, tasks, row, column);
  const float* a = gradients + row * n;
  const float* b = gradients + column * n;
  double local_sum = 0.0;
  for (std::int64_t x = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; x < n;
       x += std::int64_t(gridDim.x) * blockDim.x) {
    local_sum += static_cast<double>(a[x]) * static_cast<double>(b[x]);
  }
  const double total = block_sum(local_sum);
  if (threadIdx.x == 0) {
    partials[blockIdx.x * std::int64_t(task_gram::pair_count(tasks)) + blockIdx.y] = total;
  }
}

// Block p adds pair p's partial sums (block-major: partials[block * pairs + p]) in a fixed
// order and stores them into the Gram targets (both halves). Where the two targets are the same
// array it stores the sum of the weight and bias totals once.
__global__ void reduce_gram_partials_kernel(const double* weight_partials, int weight_blocks,
                                            const double* bias_partials, int bias_blocks, int tasks,
                                            bool overwrite, double* weight_gram,
                                            double* bias_gram) {
  const int pairs = task_gram::pair_count(tasks);
  const int pair = blockIdx.x;
  double weight_sum = 0.0, bias_sum = 0.0;
  for (int q = threadIdx.x; q < weight_blocks; q += blockDim.x) {
    weight_sum += weight_partials[std::int64_t(q) * pairs + pair];
  }
  const double weight_total = block_sum(weight_sum);
  __syncthreads();  // block_sum's shared array is reused below
  for (int q = threadIdx.x; q < bias_blocks; q += blockDim.x) {
    bias_sum += bias_partials[std::int64_t(q) * pairs + pair];
  }
  const double bias_total = block_sum(bias_sum);
  if (threadIdx.x != 0) return;
  if (weight_gram != nullptr && weight_gram == bias_gram) {
    task_gram::store_pair(weight_total + bias_total, pair, tasks, overwrite, weight_gram);
    return;
  }
  if (weight_gram != nullptr) {
    task_gram::store_pair(weight_total, pair, tasks, overwrite, weight_gram);
  }
  if (bias_gram != nullptr) task_gram::store_pair(bias_total, pair, tasks, overwrite, bias_gram);
}

// x = beta x, with beta = 0 giving 0 even where x is NaN.
__global__ void scale_kernel(float* x, std::int64_t n, float beta) {
  for (std::int64_t e = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; e < n;
       e += std::int64_t(gridDim.x) * blockDim.x) {
    x[e] = beta == 0.f ? 0.f : beta * x[e];
  }
}

__global__ void add_gram_kernel(const double* source, std::int64_t entries, double* gram) {
  const std::int64_t e = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x;
  if (e < entries) gram[e] += source[e];
}

// Stream-ordered scratch for partial Gram sums, released (stream-ordered) on destruction.
class GramScratch {
 public:
  GramScratch(std::size_t doubles, cudaStream_t stream) : stream_(stream) {
    data_ = static_cast<double*>(
        allocate_async(std::max<std::size_t>(doubles, 1) * sizeof(double), stream));
  }
  GramScratch(const GramScratch&) = delete;
  GramScratch& operator=(const GramScratch&) = delete;
  ~GramScratch() {
    try {
      release_async(data_, stream_);
    } catch (...) {  // a destructor must not throw; the device is already failing
    }
  }
  double* data() const { return data_; }

 private:
  cudaStream_t stream_;
  double* data_ = nullptr;
};

template <int K>
void launch_fused(const TaskGradientShape& shape, const float* input, const float* upstream,
                  float beta, const TaskGradientTargets<float>& targets, bool with_gram,
                  double* weight_partials, double* bias_partials, dim3 grid, cudaStream_t stream) {
  fused_task_gradients_kernel<K><<<grid, kBlockSize, 0, stream>>>(
      input, upstream, shape.batch, shape.in_features, shape.out_features, beta,
      targets.weight_gradients, targets.bias_gradients, with_gram, weight_partials, bias_partials);
  DRGRAD_CUDA_CHECK_LAUNCH(fused_task_gradients_kernel);
}

// Writes kGramBlocks blocks of partial sums for gradients [tasks, n] into partials
// (kGramBlocks * pair_count(tasks) doubles).
void launch_gram_partials(const float* gradients, std::int64_t tasks, std::int64_t n,
                          double* partials, cudaStream_t stream) {
  switch (tasks) {
#define DRGRAD_GRAM_CASE(K)                                                                  \
  case K:                                                                                    \
    gram_partials_kernel<K><<<kGramBlocks, kBlockSize, 0, stream>>>(gradients, n, partials); \
    DRGRAD_CUDA_CHECK_LAUNCH(gram_partials_kernel);                                          \
    return;
    DRGRAD_GRAM_CASE(1)
    DRGRAD_GRAM_CASE(2)
    DRGRAD_GRAM_CASE(3)
    DRGRAD_GRAM_CASE(4)
    DRGRAD_GRAM_CASE(5)
    DRGRAD_GRAM_CASE(6)
    DRGRAD_GRAM_CASE(7)
    DRGRAD_GRAM_CASE(8)
#undef DRGRAD_GRAM_CASE
    default:
      gram_partials_by_pair_kernel<<<dim3(kGramBlocks, task_gram::pair_count(int(tasks))),
                                     kBlockSize, 0, stream>>>(gradients, int(tasks), n, partials);
      DRGRAD_CUDA_CHECK_LAUNCH(gram_partials_by_pair_kernel);
  }
}

void launch_reduce(const double* weight_partials, int weight_blocks, const double* bias_partials,
                   int bias_blocks, std::int64_t tasks, GramUpdate update, double* weight_gram,
                   double* bias_gram, cudaStream_t stream) {
  reduce_gram_partials_kernel<<<task_gram::pair_count(int(tasks)), kBlockSize, 0, stream>>>(
      weight_partials, weight_blocks, bias_partials, bias_blocks, int(tasks),
      update == GramUpdate::kOverwrite, weight_gram, bias_gram);
  DRGRAD_CUDA_CHECK_LAUNCH(reduce_gram_partials_kernel);
}

// cuBLAS batched product and column sums; then, when asked, one Gram pass over each result.
void batched_then_gram(const Context& ctx, const TaskGradientShape& shape, const float* input,
                       const float* upstream, float beta, const TaskGradientTargets<float>& targets,
                       GramUpdate update) {
  const std::int64_t tasks = shape.tasks, batch = shape.batch;
  const std::int64_t in = shape.in_features, out = shape.out_features;
  const cudaStream_t stream = stream_of(ctx);
  if (in > 0 && out > 0) {
    if (batch > 0) {
      const GemmShape product{true, false, in, out, batch, in, out, out};
      const GemmBatch stacked{tasks, 0, batch * out, in * out};
      gemm_strided_batched(ctx, product, stacked, 1.f, input, upstream, beta,
                           targets.weight_gradients);
    } else if (beta != 1.f) {
      // No product (an empty batch): dW = beta dW, and 0 for beta = 0 whatever dW held.
      const std::int64_t n = tasks * in * out;
      scale_kernel<<<grid_for(n), kBlockSize, 0, stream>>>(targets.weight_gradients, n, beta);
      DRGRAD_CUDA_CHECK_LAUNCH(scale_kernel);
    }
  }
  if (targets.bias_gradients != nullptr && out > 0) {
    if (beta == 0.f) {
      DRGRAD_CUDA_CHECK(
          cudaMemsetAsync(targets.bias_gradients, 0, tasks * out * sizeof(float), stream));
    }
    for (std::int64_t k = 0; k < tasks; ++k) {
      column_sums(ctx, upstream + k * batch * out, out, batch, out, beta == 0.f ? 1.f : beta,
                  targets.bias_gradients + k * out);
    }
  }
  const bool weight_gram = targets.weight_gram != nullptr;
  const bool bias_gram = targets.bias_gram != nullptr && targets.bias_gradients != nullptr;
  if (!weight_gram && !bias_gram) return;
  const std::size_t pairs = static_cast<std::size_t>(task_gram::pair_count(int(tasks)));
  GramScratch scratch(2 * kGramBlocks * pairs, stream);
  double* weight_partials = scratch.data();
  double* bias_partials = scratch.data() + kGramBlocks * pairs;
  if (weight_gram)
    launch_gram_partials(targets.weight_gradients, tasks, in * out, weight_partials, stream);
  if (bias_gram) launch_gram_partials(targets.bias_gradients, tasks, out, bias_partials, stream);
  launch_reduce(weight_partials, weight_gram ? kGramBlocks : 0, bias_partials,
                bias_gram ? kGramBlocks : 0, tasks, update,
                weight_gram ? targets.weight_gram : nullptr,
                bias_gram ? targets.bias_gram : nullptr, stream);
}

}  // namespace

void task_gradients_with_gram(const Context& ctx, const TaskGradientShape& shape,
                              const float* input, const float* upstream, float beta,
                              const TaskGradientTargets<float>& targets, GramUpdate update,
                              TaskGramPath path) {
  const bool with_gram = targets.weight_gram != nullptr ||
                         (targets.bias_gram != nullptr && targets.bias_gradients != nullptr);
  if (!with_gram || path == TaskGramPath::kBatchedGemmThenGram ||
      shape.tasks > kMaxFusedGramTasks) {
    batched_then_gram(ctx, shape, input, upstream, beta, targets, update);
    return;
  }
  const std::int64_t column_tiles =
      std::max<std::int64_t>(1, (shape.out_features + kTile - 1) / kTile);
  const std::int64_t row_tiles = std::max<std::int64_t>(1, (shape.in_features + kTile - 1) / kTile);
  if (row_tiles > 65535 || column_tiles * row_tiles > 2147483647LL / kMaxFusedGramTasks) {
    throw NotSupportedError("task_gradients_with_gram: " + std::to_string(shape.in_features) +
                            " input features exceed the fused kernel's grid (at most " +
                            std::to_string(65535 * kTile) +
                            "); use set_task_gram_path(TaskGramPath::kBatchedGemmThenGram)");
  }
  const dim3 grid(static_cast<unsigned>(column_tiles), static_cast<unsigned>(row_tiles));
  const cudaStream_t stream = stream_of(ctx);
  const std::size_t pairs = static_cast<std::size_t>(task_gram::pair_count(int(shape.tasks)));
  const std::size_t weight_blocks = static_cast<std::size_t>(column_tiles * row_tiles);
  GramScratch scratch((weight_blocks + column_tiles) * pairs, stream);
  double* weight_partials = scratch.data();
  double* bias_partials = scratch.data() + weight_blocks * pairs;
  // The kernel reduces the weight Gram whenever it reduces at all; a bias-only request simply
  // ignores the weight partials.
  switch (shape.tasks) {
#define DRGRAD_FUSED_CASE(K)                                                                     \
  case K:                                                                                        \
    launch_fused<K>(shape, input, upstream, beta, targets, true, weight_partials, bias_partials, \
                    grid, stream);                                                               \
    break;
    DRGRAD_FUSED_CASE(1)
    DRGRAD_FUSED_CASE(2)
    DRGRAD_FUSED_CASE(3)
    DRGRAD_FUSED_CASE(4)
    DRGRAD_FUSED_CASE(5)
    DRGRAD_FUSED_CASE(6)
    DRGRAD_FUSED_CASE(7)
    DRGRAD_FUSED_CASE(8)
#undef DRGRAD_FUSED_CASE
  }
  const bool bias_gram = targets.bias_gram != nullptr && targets.bias_gradients != nullptr;
  launch_reduce(weight_partials, targets.weight_gram != nullptr ? int(weight_blocks) : 0,
                bias_partials, bias_gram ? int(column_tiles) : 0, shape.tasks, update,
                targets.weight_gram, bias_gram ? targets.bias_gram : nullptr, stream);
}

void accumulate_task_gram_on_device(const Context& ctx, const float* gradients, std::int64_t tasks,
                                    std::int64_t n, double* gram) {
  const cudaStream_t stream = stream_of(ctx);
  const std::size_t pairs = static_cast<std::size_t>(task_gram::pair_count(int(tasks)));
  GramScratch scratch(kGramBlocks * pairs, stream);
  launch_gram_partials(gradients, tasks, n, scratch.data(), stream);
  launch_reduce(scratch.data(), kGramBlocks, nullptr, 0, tasks, GramUpdate::kAdd, gram, nullptr,
                stream);
}

void add_task_gram(const Context& ctx, const double* source, std::int64_t tasks, double* gram) {
  const std::int64_t entries = tasks * tasks;
  add_gram_kernel<<<grid_for(entries), kBlockSize, 0, stream_of(ctx)>>>(source, entries, gram);
  DRGRAD_CUDA_CHECK_LAUNCH(add_gram_kernel);
}

void read_task_gram(const Context& ctx, const double* gram, std::int64_t tasks, double* host_gram) {
  const cudaStream_t stream = stream_of(ctx);
  DRGRAD_CUDA_CHECK(cudaMemcpyAsync(host_gram, gram, tasks * tasks * sizeof(double),
                                    cudaMemcpyDeviceToHost, stream));
  DRGRAD_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace drgrad::kernels::cuda
