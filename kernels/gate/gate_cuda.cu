// CUDA twin of kernels/gate/gate.h. Row softmax: one warp per row, lanes across the columns,
// max and sum by warp shuffles. Gated combination: one thread per (sample, column) that visits
// the selected experts in order; the gate gradient is one warp per (sample, expert). Every output
// element has exactly one writer, so no atomics and the same bits on every run. The fused gate
// (gate_combine_*) does both in one kernel each way, one warp per sample (see the kernels).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/gate/gate.h"
#include "kernels/gate/gate_math.h"

namespace drgrad::kernels::cuda {
namespace {

constexpr int kWarpSize = 32;
constexpr unsigned kFullWarp = 0xffffffffu;

unsigned grid_for_warps(std::int64_t items) {
  return grid_for(items * kWarpSize);
}

// Butterfly reductions: every lane ends with the same value, combined in a fixed pattern.
__device__ float warp_max(float value) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value = fmaxf(value, __shfl_xor_sync(kFullWarp, value, offset));
  }
  return value;
}
__device__ float warp_sum(float value) {
  for (int offset = kWarpSize / 2; offset > 0; offset /= 2) {
    value += __shfl_xor_sync(kFullWarp, value, offset);
  }
  return value;
}

// Where this thread's warp starts in a grid-stride loop over warp-sized items. Loops bounded by
// an item count keep whole warps together, so full-mask shuffles always see all 32 lanes.
struct WarpGrid {
  int lane;
  std::int64_t first;
  std::int64_t stride;
};
__device__ WarpGrid warp_grid() {
  return {static_cast<int>(threadIdx.x % kWarpSize),
          (blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x) / kWarpSize,
          std::int64_t(gridDim.x) * blockDim.x / kWarpSize};
}

__global__ void softmax_rows_forward_kernel(const float* logits, float* probabilities,
                                            std::int64_t rows, std::int64_t cols) {
  const WarpGrid warps = warp_grid();
  const int lane = warps.lane;
  for (std::int64_t r = warps.first; r < rows; r += warps.stride) {
    const float* in = logits + r * cols;
    float* out = probabilities + r * cols;
    float peak = -INFINITY;
    for (std::int64_t c = lane; c < cols; c += kWarpSize) peak = fmaxf(peak, in[c]);
    peak = warp_max(peak);
    float total = 0.f;
    // Each lane reads and then writes only its own columns, so logits may alias probabilities.
    for (std::int64_t c = lane; c < cols; c += kWarpSize) {
      const float e = expf(in[c] - peak);
      out[c] = e;
      total += e;
    }
    total = warp_sum(total);
    for (std::int64_t c = lane; c < cols; c += kWarpSize) out[c] /= total;
  }
}

__global__ void softmax_rows_backward_kernel(const float* probabilities,
                                             const float* d_probabilities, float* d_logits,
                                             std::int64_t rows, std::int64_t cols) {
  const WarpGrid warps = warp_grid();
  const int lane = warps.lane;
  for (std::int64_t r = warps.first; r < rows; r += warps.stride) {
    const float* p = probabilities + r * cols;
    const float* dp = d_probabilities + r * cols;
    float* dz = d_logits + r * cols;
    float inner = 0.f;
    for (std::int64_t c = lane; c < cols; c += kWarpSize) inner += p[c] * dp[c];
    inner = warp_sum(inner);  // all reads of dp finish here, so d_logits may alias it
    for (std::int64_t c = lane; c < cols; c += kWarpSize) dz[c] = p[c] * (dp[c] - inner);
  }
}

__global__ void gated_combination_forward_kernel(const float* experts, const float* gate,
                                                 ExpertSelection selection, std::int64_t batch,
                                                 std::int64_t dim, float* out) {
  const std::int64_t total = batch * dim;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < total;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t b = i / dim, j = i - b * dim;
    float sum = 0.f;
    for (int e = 0; e < selection.count; ++e) {
      sum += gate[b * selection.count + e] * experts[(selection.index[e] * batch + b) * dim + j];
    }
    out[i] = sum;
  }
}

// d_experts for one (b, j) per thread: the thread walks the selected experts in order, so even a
// selection that names one expert twice has a single writer per element.
__global__ void gated_combination_expert_gradient_kernel(const float* gate, const float* d_out,
                                                         ExpertSelection selection,
                                                         std::int64_t batch, std::int64_t dim,
                                                         float* d_experts) {
  const std::int64_t total = batch * dim;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < total;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t b = i / dim, j = i - b * dim;
    const float upstream = d_out[i];
    for (int e = 0; e < selection.count; ++e) {
      d_experts[(selection.index[e] * batch + b) * dim + j] +=
          gate[b * selection.count + e] * upstream;
    }
  }
}

// d_gate[b, e] = sum_j experts[index[e], b, j] * d_out[b, j], one warp per (b, e).
__global__ void gated_combination_gate_gradient_kernel(const float* experts, const float* d_out,
                                                       ExpertSelection selection,
                                                       std::int64_t batch, std::int64_t dim,
                                                       float* d_gate) {
  const WarpGrid warps = warp_grid();
  const int lane = warps.lane;
  for (std::int64_t item = warps.first; item < batch * selection.count; item += warps.stride) {
    const std::int64_t b = item / selection.count;
    const int e = static_cast<int>(item - b * selection.count);
    const float* expert = experts + (selection.index[e] * batch + b) * dim;
    const float* upstream = d_out + b * dim;
    float inner = 0.f;
    for (std::int64_t j = lane; j < dim; j += kWarpSize) inner += expert[j] * upstream[j];
    inner = warp_sum(inner);
    if (lane == 0) d_gate[item] = inner;
  }
}

// ---- The fused gate: softmax and gated combination in one kernel each way ----------------------

constexpr int kWarpsPerBlock = kBlockSize / kWarpSize;
constexpr int kMaxGateColumns = ExpertSelection::kMaxExperts;

// One warp per sample. The warp's lanes hold the sample's logits (columns lane and lane + 32),
// reduce max and sum by shuffles, and leave the probabilities in the warp's slice of shared
// memory; then each lane combines the selected experts for its columns of dim, visiting them in
// selection order (the CPU twin's order). Each lane reads its logits before writing its
// probabilities, so probabilities may alias logits.
__global__ void gate_combine_forward_kernel(const float* logits, const float* experts,
                                            ExpertSelection selection, std::int64_t batch,
                                            std::int64_t dim, float* probabilities, float* out) {
  __shared__ float gate_of_warp[kWarpsPerBlock][kMaxGateColumns];
  float* gate = gate_of_warp[threadIdx.x / kWarpSize];
  const WarpGrid warps = warp_grid();
  const int lane = warps.lane;
  const int count = selection.count;
  for (std::int64_t b = warps.first; b < batch; b += warps.stride) {
    const float* in = logits + b * count;
    float peak = -INFINITY;
    for (int c = lane; c < count; c += kWarpSize) peak = fmaxf(peak, in[c]);
    peak = warp_max(peak);
    float total = 0.f;
    for (int c = lane; c < count; c += kWarpSize) {
      const float e = expf(in[c] - peak);
      gate[c] = e;
      total += e;
    }
    total = warp_sum(total);
    for (int c = lane; c < count; c += kWarpSize) {
      const float p = gate[c] / total;
      gate[c] = p;
      probabilities[b * count + c] = p;
    }
    __syncwarp();  // every lane reads every probability below
    for (std::int64_t j = lane; j < dim; j += kWarpSize) {
      float sum = 0.f;
      for (int i = 0; i < count; ++i) {
        sum = gated_term(sum, gate[i], experts[(selection.index[i] * batch + b) * dim + j]);
      }
      out[b * dim + j] = sum;
    }
    __syncwarp();  // the next sample overwrites gate
  }
}

// One warp per (task, sample): item = task * batch + sample. For each selected expert in order,
// the lanes walk their columns of dim, accumulating d_experts (lane j's elements are written by
// lane j only, one expert after another, so a selection naming an expert twice still has one
// writer per element and the CPU twin's order) and the partial dot product d_p, which a
// butterfly warp reduction completes in a fixed pattern. Then the softmax backward over the
// sample's columns. Tasks write disjoint slices of d_experts (task_stride apart).
__global__ void gate_combine_backward_kernel(const float* experts, const float* probabilities,
                                             const float* d_out, ExpertSelection selection,
                                             std::int64_t tasks, std::int64_t batch,
                                             std::int64_t dim, std::int64_t d_experts_task_stride,
                                             float* d_experts, float* d_logits) {
  __shared__ float gate_of_warp[kWarpsPerBlock][kMaxGateColumns];
  __shared__ float d_gate_of_warp[kWarpsPerBlock][kMaxGateColumns];
  float* gate = gate_of_warp[threadIdx.x / kWarpSize];
  float* d_gate = d_gate_of_warp[threadIdx.x / kWarpSize];
  const WarpGrid warps = warp_grid();
  const int lane = warps.lane;
  const int count = selection.count;
  for (std::int64_t item = warps.first; item < tasks * batch; item += warps.stride) {
    const std::int64_t task = item / batch, b = item - task * batch;
    const float* upstream = d_out + item * dim;
    float* d_experts_of_task = d_experts + task * d_experts_task_stride;
    for (int c = lane; c < count; c += kWarpSize) gate[c] = probabilities[b * count + c];
    __syncwarp();
    for (int i = 0; i < count; ++i) {
      const std::int64_t offset = (selection.index[i] * batch + b) * dim;
      const float weight = gate[i];
      float inner = 0.f;
      for (std::int64_t j = lane; j < dim; j += kWarpSize) {
        const float u = upstream[j];
        inner = gated_term(inner, experts[offset + j], u);
        d_experts_of_task[offset + j] = gated_term(d_experts_of_task[offset + j], weight, u);
      }
      inner = warp_sum(inner);  // the same value in every lane
      if (lane == i % kWarpSize) d_gate[i] = inner;
    }
    __syncwarp();
    float inner = 0.f;
    for (int c = lane; c < count; c += kWarpSize) inner += gate[c] * d_gate[c];
    inner = warp_sum(inner);
    for (int c = lane; c < count; c += kWarpSize) {
      d_logits[item * count + c] = softmax_logit_gradient(gate[c], d_gate[c], inner);
    }
    __syncwarp();  // the next item overwrites gate and d_gate
  }
}

void check_rows(const char* op, std::int64_t rows, std::int64_t cols) {
  if (rows < 0 || cols < 0) {
    throw std::invalid_argument(std::string(op) + ": rows " + std::to_string(rows) + " and cols " +
                                std::to_string(cols) + " must be non-negative");
  }
}

void check_selection(const char* op, const ExpertSelection& selection, std::int64_t batch,
                     std::int64_t dim) {
  if (selection.count < 0 || selection.count > ExpertSelection::kMaxExperts) {
    throw std::invalid_argument(std::string(op) + ": selection.count " +
                                std::to_string(selection.count) + " is outside [0, " +
                                std::to_string(ExpertSelection::kMaxExperts) + "]");
  }
  for (int e = 0; e < selection.count; ++e) {
    if (selection.index[e] < 0) {
      throw std::invalid_argument(std::string(op) + ": selection.index[" + std::to_string(e) +
                                  "] = " + std::to_string(selection.index[e]) + " is negative");
    }
  }
  if (batch < 0 || dim < 0) {
    throw std::invalid_argument(std::string(op) + ": batch " + std::to_string(batch) + " and dim " +
                                std::to_string(dim) + " must be non-negative");
  }
}

}  // namespace

void softmax_rows_forward(const Context& ctx, const float* logits, float* probabilities,
                          std::int64_t rows, std::int64_t cols) {
  check_rows("softmax_rows_forward", rows, cols);
  if (rows == 0 || cols == 0) return;
  softmax_rows_forward_kernel<<<grid_for_warps(rows), kBlockSize, 0, stream_of(ctx)>>>(
      logits, probabilities, rows, cols);
  DRGRAD_CUDA_CHECK_LAUNCH(softmax_rows_forward_kernel);
}

void softmax_rows_backward(const Context& ctx, const float* probabilities,
                           const float* d_probabilities, float* d_logits, std::int64_t rows,
                           std::int64_t cols) {
  check_rows("softmax_rows_backward", rows, cols);
  if (rows == 0 || cols == 0) return;
  softmax_rows_backward_kernel<<<grid_for_warps(rows), kBlockSize, 0, stream_of(ctx)>>>(
      probabilities, d_probabilities, d_logits, rows, cols);
  DRGRAD_CUDA_CHECK_LAUNCH(softmax_rows_backward_kernel);
}

void gated_combination_forward(const Context& ctx, const float* experts, const float* gate,
                               const ExpertSelection& selection, std::int64_t batch,
                               std::int64_t dim, float* out) {
  check_selection("gated_combination_forward", selection, batch, dim);
  if (batch == 0 || dim == 0) return;
  gated_combination_forward_kernel<<<grid_for(batch * dim), kBlockSize, 0, stream_of(ctx)>>>(
      experts, gate, selection, batch, dim, out);
  DRGRAD_CUDA_CHECK_LAUNCH(gated_combination_forward_kernel);
}

void gated_combination_backward(const Context& ctx, const float* experts, const float* gate,
                                const float* d_out, const ExpertSelection& selection,
                                std::int64_t batch, std::int64_t dim, float* d_experts,
                                float* d_gate) {
  check_selection("gated_combination_backward", selection, batch, dim);
  if (batch == 0 || selection.count == 0) return;
  const cudaStream_t stream = stream_of(ctx);
  if (dim > 0) {
    gated_combination_expert_gradient_kernel<<<grid_for(batch * dim), kBlockSize, 0, stream>>>(
        gate, d_out, selection, batch, dim, d_experts);
    DRGRAD_CUDA_CHECK_LAUNCH(gated_combination_expert_gradient_kernel);
  }
  // With dim == 0 every d_gate entry is an empty sum, which this kernel writes as 0.
  gated_combination_gate_gradient_kernel<<<grid_for_warps(batch * selection.count), kBlockSize, 0,
                                           stream>>>(experts, d_out, selection, batch, dim, d_gate);
  DRGRAD_CUDA_CHECK_LAUNCH(gated_combination_gate_gradient_kernel);
}

void gate_combine_forward(const Context& ctx, const float* logits, const float* experts,
                          const ExpertSelection& selection, std::int64_t batch, std::int64_t dim,
                          float* probabilities, float* out) {
  check_selection("gate_combine_forward", selection, batch, dim);
  if (batch == 0) return;
  gate_combine_forward_kernel<<<grid_for_warps(batch), kBlockSize, 0, stream_of(ctx)>>>(
      logits, experts, selection, batch, dim, probabilities, out);
  DRGRAD_CUDA_CHECK_LAUNCH(gate_combine_forward_kernel);
}

void gate_combine_backward(const Context& ctx, const float* experts, const float* probabilities,
                           const float* d_out, const ExpertSelection& selection, std::int64_t batch,
                           std::int64_t dim, float* d_experts, float* d_logits) {
  check_selection("gate_combine_backward", selection, batch, dim);
  if (batch == 0 || selection.count == 0) return;
  gate_combine_backward_kernel<<<grid_for_warps(batch), kBlockSize, 0, stream_of(ctx)>>>(
      experts, probabilities, d_out, selection, 1, batch, dim, 0, d_experts, d_logits);
  DRGRAD_CUDA_CHECK_LAUNCH(gate_combine_backward_kernel);
}

void gate_combine_backward_stacked(const Context& ctx, const float* experts,
                                   const float* probabilities, const float* d_out_stacked,
                                   const ExpertSelection& selection, std::int64_t tasks,
                                   std::int64_t num_experts_total, std::int64_t batch,
                                   std::int64_t dim, float* d_experts_stacked,
                                   float* d_logits_stacked) {
  check_selection("gate_combine_backward_stacked", selection, batch, dim);
  if (tasks < 0 || num_experts_total < 0) {
    throw std::invalid_argument("gate_combine_backward_stacked: tasks " + std::to_string(tasks) +
                                " and num_experts_total " + std::to_string(num_experts_total) +
                                " must be non-negative");
  }
  if (tasks == 0 || batch == 0 || selection.count == 0) return;
  gate_combine_backward_kernel<<<grid_for_warps(tasks * batch), kBlockSize, 0, stream_of(ctx)>>>(
      experts, probabilities, d_out_stacked, selection, tasks, batch, dim,
      num_experts_total * batch * dim, d_experts_stacked, d_logits_stacked);
  DRGRAD_CUDA_CHECK_LAUNCH(gate_combine_backward_kernel);
}

}  // namespace drgrad::kernels::cuda
