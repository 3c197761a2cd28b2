// CUDA twin of kernels/dense/dense_layer.h. Products go to cuBLASLt with the bias (and relu)
// fused into the epilogue where cuBLASLt offers one, or to cuBLAS followed by drgrad's fused
// bias+activation kernels (mish and sigmoid always, since cuBLASLt has neither). Row-major
// matrices are read by the column-major libraries as their transposes: y^T = W^T x^T.
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <array>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>

#include "kernels/core/cublaslt_handle.h"
#include "kernels/core/cuda_check.h"
#include "kernels/core/launch.cuh"
#include "kernels/core/memory.h"
#include "kernels/dense/dense_layer.h"
#include "kernels/dense/dense_math.h"
#include "kernels/dense/gemm.h"

namespace drgrad::kernels::cuda {
namespace {

// ---------------------------------------------------------------------------------------------
// Fused element-wise kernels.

// z = z_in + bias[c] (bias may be null); z_out[i] = z when z_out is given; y[i] = f(z). z_in
// may alias z_out or y. One thread per element, grid-stride loop.
__global__ void bias_activation_forward_kernel(Activation f, const float* z_in, const float* bias,
                                               float* z_out, float* y, std::int64_t rows,
                                               std::int64_t cols) {
  const std::int64_t total = rows * cols;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < total;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const float z = bias != nullptr ? z_in[i] + bias[i % cols] : z_in[i];
    if (z_out != nullptr) z_out[i] = z;
    y[i] = dense_math::activation_value(f, z);
  }
}

// The bias gradient in a fixed order (the same bits every run) without atomics. Pass 1: block
// (x, chunk, task) covers kColumnsPerBlock adjacent columns over rows [chunk * kRowsPerChunk,
// ...) of task `task`; row slice s of the block walks rows s, s + kRowSlices, ... in order,
// computing dz = dy f'(z) (written to d_pre when given), and the slices are added in order into
// partial[task][chunk][column]. Pass 2 adds the chunks of each (task, column) in order.
constexpr int kColumnsPerBlock = 32;
constexpr int kRowSlices = kBlockSize / kColumnsPerBlock;
constexpr std::int64_t kRowsPerChunk = 256;

__global__ void activation_gradient_partial_sums_kernel(Activation f, const float* pre_activation,
                                                        const float* y, const float* dy,
                                                        float* d_pre, std::int64_t rows,
                                                        std::int64_t cols, float* partial) {
  __shared__ float slice_sums[kRowSlices][kColumnsPerBlock];
  const std::int64_t column = blockIdx.x * std::int64_t(kColumnsPerBlock) + threadIdx.x;
  const std::int64_t chunk = blockIdx.y, task = blockIdx.z;
  const std::int64_t first_row = chunk * kRowsPerChunk;
  const std::int64_t end_row = first_row + kRowsPerChunk < rows ? first_row + kRowsPerChunk : rows;
  const std::int64_t task_offset = task * rows * cols;
  float sum = 0.f;
  if (column < cols) {
    for (std::int64_t r = first_row + threadIdx.y; r < end_row; r += kRowSlices) {
      const std::int64_t i = r * cols + column;
      const float z = pre_activation != nullptr ? pre_activation[i] : 0.f;
      const float y_value = y != nullptr ? y[i] : 0.f;
      const float dz = dense_math::activation_backward_value(f, z, y_value, dy[task_offset + i]);
      if (d_pre != nullptr) d_pre[task_offset + i] = dz;
      sum += dz;
    }
  }
  slice_sums[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && column < cols && partial != nullptr) {
    float total = 0.f;
    for (int s = 0; s < kRowSlices; ++s) total += slice_sums[s][threadIdx.x];
    partial[(task * gridDim.y + chunk) * cols + column] = total;
  }
}

// d_bias[task][c] = (accumulate ? d_bias : 0) + sum over chunks of partial[task][chunk][c].
__global__ void sum_partials_kernel(const float* partial, std::int64_t chunks, std::int64_t cols,
                                    std::int64_t tasks, bool accumulate, float* d_bias) {
  const std::int64_t total = tasks * cols;
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < total;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    const std::int64_t task = i / cols, column = i - task * cols;
    float sum = 0.f;
    for (std::int64_t c = 0; c < chunks; ++c) sum += partial[(task * chunks + c) * cols + column];
    d_bias[i] = accumulate ? d_bias[i] + sum : sum;
  }
}

// y[i] += x[i].
__global__ void add_kernel(const float* x, float* y, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n;
       i += std::int64_t(gridDim.x) * blockDim.x) {
    y[i] += x[i];
  }
}

void bias_activation_forward(const Context& ctx, Activation f, const float* z_in, const float* bias,
                             float* z_out, float* y, std::int64_t rows, std::int64_t cols) {
  bias_activation_forward_kernel<<<grid_for(rows * cols), kBlockSize, 0, stream_of(ctx)>>>(
      f, z_in, bias, z_out, y, rows, cols);
  DRGRAD_CUDA_CHECK_LAUNCH(bias_activation_forward_kernel);
}

// dz = dy f'(z) for every task into d_pre (when given), and the bias gradients (when d_bias is
// given), both in one pass over dy.
void activation_gradient_and_bias_gradient(const Context& ctx, Activation f,
                                           const float* pre_activation, const float* y,
                                           const float* dy, float* d_pre, std::int64_t rows,
                                           std::int64_t cols, std::int64_t tasks, bool accumulate,
                                           float* d_bias) {
  const std::int64_t column_blocks = (cols + kColumnsPerBlock - 1) / kColumnsPerBlock;
  const std::int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  if (column_blocks > 2147483647 || chunks > 65535 || tasks > 65535) {
    throw NotSupportedError("dense backward over " + std::to_string(tasks) + " tasks of [" +
                            std::to_string(rows) + ", " + std::to_string(cols) +
                            "]: more blocks than the CUDA grid can cover");
  }
  if (rows == 0) {
    if (d_bias != nullptr && !accumulate) {
      DRGRAD_CUDA_CHECK(cudaMemsetAsync(d_bias, 0, sizeof(float) * tasks * cols, stream_of(ctx)));
    }
    return;
  }
  float* partial = nullptr;
  if (d_bias != nullptr) {
    partial =
        static_cast<float*>(allocate_async(sizeof(float) * tasks * chunks * cols, ctx.stream));
  }
  const dim3 grid(static_cast<unsigned>(column_blocks), static_cast<unsigned>(chunks),
                  static_cast<unsigned>(tasks));
  const dim3 block(kColumnsPerBlock, kRowSlices);
  activation_gradient_partial_sums_kernel<<<grid, block, 0, stream_of(ctx)>>>(
      f, pre_activation, y, dy, d_pre, rows, cols, partial);
  DRGRAD_CUDA_CHECK_LAUNCH(activation_gradient_partial_sums_kernel);
  if (d_bias != nullptr) {
    sum_partials_kernel<<<grid_for(tasks * cols), kBlockSize, 0, stream_of(ctx)>>>(
        partial, chunks, cols, tasks, accumulate, d_bias);
    DRGRAD_CUDA_CHECK_LAUNCH(sum_partials_kernel);
    release_async(partial, ctx.stream);
  }
}

// ---------------------------------------------------------------------------------------------
// cuBLASLt products with cached plans.

// A column-major product D[m, n] = op(A) op(B) (+ beta C, C = D) with an epilogue.
struct LtProblem {
  bool transpose_a = false, transpose_b = false;
  std::int64_t m = 0, n = 0, k = 0, lda = 0, ldb = 0, ldc = 0;
  cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
  std::int64_t aux_ld = 0;  // relu mask: bits between columns (a multiple of 128, >= m)
};

// The largest power of two up to 16 dividing the address: cuBLASLt's heuristic assumes 16-byte
// aligned operands unless told otherwise, and rows of a stacked buffer may start anywhere.
std::uint32_t alignment_of(const void* pointer) {
  const auto address = reinterpret_cast<std::uintptr_t>(pointer);
  std::uint32_t alignment = 16;
  while (alignment > 4 && address % alignment != 0) alignment /= 2;
  return alignment;
}

bool uses_bias_pointer(cublasLtEpilogue_t epilogue) {
  return epilogue == CUBLASLT_EPILOGUE_BIAS || epilogue == CUBLASLT_EPILOGUE_RELU_BIAS ||
         epilogue == CUBLASLT_EPILOGUE_RELU_AUX_BIAS || epilogue == CUBLASLT_EPILOGUE_DRELU_BGRAD ||
         epilogue == CUBLASLT_EPILOGUE_BGRADA || epilogue == CUBLASLT_EPILOGUE_BGRADB;
}

bool uses_aux_pointer(cublasLtEpilogue_t epilogue) {
  return epilogue == CUBLASLT_EPILOGUE_RELU_AUX_BIAS || epilogue == CUBLASLT_EPILOGUE_DRELU_BGRAD;
}

// Bits between the columns of a relu mask over `rows` rows: cuBLASLt asks for a multiple of 128.
std::int64_t relu_mask_column_bits(std::int64_t rows) {
  return (rows + 127) / 128 * 128;
}

// A matmul descriptor, its layouts and the heuristic's choice for one problem, precision and
// operand alignment. `supported` is false when the heuristic offered nothing (the caller then
// takes the unfused route). Owned by the thread's cache; destroyed when the thread exits.
struct LtPlan {
  cublasLtMatmulDesc_t description = nullptr;
  cublasLtMatrixLayout_t a_layout = nullptr, b_layout = nullptr, c_layout = nullptr;
  cublasLtMatmulAlgo_t algorithm{};
  bool supported = false;

  LtPlan() = default;
  LtPlan(const LtPlan&) = delete;
  LtPlan& operator=(const LtPlan&) = delete;
  ~LtPlan() {
    if (c_layout != nullptr) static_cast<void>(cublasLtMatrixLayoutDestroy(c_layout));
    if (b_layout != nullptr) static_cast<void>(cublasLtMatrixLayoutDestroy(b_layout));
    if (a_layout != nullptr) static_cast<void>(cublasLtMatrixLayoutDestroy(a_layout));
    if (description != nullptr) static_cast<void>(cublasLtMatmulDescDestroy(description));
  }
};

using LtPlanKey = std::array<std::int64_t, 17>;

template <typename Value>
void set_description(cublasLtMatmulDesc_t description, cublasLtMatmulDescAttributes_t attribute,
                     const Value& value) {
  DRGRAD_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(description, attribute, &value, sizeof(value)));
}

// Builds the plan: descriptor, layouts, and one heuristic query. Pointers are needed only for
// their alignment (the bias pointer is set so that the heuristic sees its alignment too).
std::unique_ptr<LtPlan> make_plan(const CublasLtResources& lt, const LtProblem& p,
                                  cublasComputeType_t compute_type, const void* a, const void* b,
                                  const void* c, const void* bias, const void* aux) {
  auto plan = std::make_unique<LtPlan>();
  DRGRAD_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan->description, compute_type, CUDA_R_32F));
  const cublasOperation_t transpose_a = p.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t transpose_b = p.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  set_description(plan->description, CUBLASLT_MATMUL_DESC_TRANSA, transpose_a);
  set_description(plan->description, CUBLASLT_MATMUL_DESC_TRANSB, transpose_b);
  set_description(plan->description, CUBLASLT_MATMUL_DESC_EPILOGUE, p.epilogue);
  if (uses_bias_pointer(p.epilogue)) {
    set_description(plan->description, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  }
  if (uses_aux_pointer(p.epilogue)) {
    set_description(plan->description, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
    set_description(plan->description, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, p.aux_ld);
  }
  // Layouts of the matrices as stored (before the transposes).
  DRGRAD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(
      &plan->a_layout, CUDA_R_32F, p.transpose_a ? p.k : p.m, p.transpose_a ? p.m : p.k, p.lda));
  DRGRAD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(
      &plan->b_layout, CUDA_R_32F, p.transpose_b ? p.n : p.k, p.transpose_b ? p.k : p.n, p.ldb));
  DRGRAD_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&plan->c_layout, CUDA_R_32F, p.m, p.n, p.ldc));

  cublasLtMatmulPreference_t preference = nullptr;
  DRGRAD_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&preference));
  const std::uint64_t workspace_bytes = lt.workspace_bytes;
  const std::uint32_t align_a = alignment_of(a), align_b = alignment_of(b),
                      align_c = alignment_of(c);
  cublasLtMatmulHeuristicResult_t result{};
  int returned = 0;
  cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
  try {
    DRGRAD_CUBLAS_CHECK(
        cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                             &workspace_bytes, sizeof(workspace_bytes)));
    DRGRAD_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_a, sizeof(align_a)));
    DRGRAD_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_b, sizeof(align_b)));
    DRGRAD_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c, sizeof(align_c)));
    DRGRAD_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(
        preference, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c, sizeof(align_c)));
    status = cublasLtMatmulAlgoGetHeuristic(lt.handle, plan->description, plan->a_layout,
                                            plan->b_layout, plan->c_layout, plan->c_layout,
                                            preference, 1, &result, &returned);
  } catch (...) {
    static_cast<void>(cublasLtMatmulPreferenceDestroy(preference));
    throw;
  }
  DRGRAD_CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(preference));
  // "Not supported" means this epilogue, precision or alignment has no kernel: the caller takes
  // the unfused route. Any other failure is a bug here and is reported.
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) return plan;
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw_cublas_error(status, "cublasLtMatmulAlgoGetHeuristic(...)", __FILE__, __LINE__);
  }
  if (returned > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
    plan->algorithm = result.algo;
    plan->supported = true;
  }
  return plan;
}

// The plan for this thread, device, problem, precision and alignment, built on first use so
// that a training step never re-runs the heuristic.
LtPlan& plan_for(const Context& ctx, const CublasLtResources& lt, const LtProblem& p, const void* a,
                 const void* b, const void* c, const void* bias, const void* aux) {
  const cublasComputeType_t compute_type = compute_type_for(ctx.matmul_precision);
  const LtPlanKey key{ctx.device.index,
                      p.aux_ld,
                      p.transpose_a,
                      p.transpose_b,
                      p.m,
                      p.n,
                      p.k,
                      p.lda,
                      p.ldb,
                      p.ldc,
                      static_cast<std::int64_t>(p.epilogue),
                      static_cast<std::int64_t>(compute_type),
                      alignment_of(a),
                      alignment_of(b),
                      alignment_of(c),
                      uses_bias_pointer(p.epilogue) ? alignment_of(bias) : 0,
                      uses_aux_pointer(p.epilogue) ? alignment_of(aux) : 0};
  thread_local std::map<LtPlanKey, std::unique_ptr<LtPlan>> plans;
  std::unique_ptr<LtPlan>& plan = plans[key];
  if (plan == nullptr) plan = make_plan(lt, p, compute_type, a, b, c, bias, aux);
  return *plan;
}

// Runs D = alpha op(A) op(B) + beta D with the problem's epilogue on ctx's stream. Returns
// false, running nothing, when cuBLASLt has no algorithm for it.
bool lt_matmul(const Context& ctx, const LtProblem& p, float alpha, const float* a, const float* b,
               float beta, float* d, const float* bias, const void* aux = nullptr) {
  const CublasLtResources lt = cublaslt_resources_for(ctx);
  LtPlan& plan = plan_for(ctx, lt, p, a, b, d, bias, aux);
  if (!plan.supported) return false;
  if (uses_bias_pointer(p.epilogue)) {
    set_description(plan.description, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  }
  if (uses_aux_pointer(p.epilogue)) {
    set_description(plan.description, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
  }
  const cublasStatus_t status =
      cublasLtMatmul(lt.handle, plan.description, &alpha, a, plan.a_layout, b, plan.b_layout, &beta,
                     d, plan.c_layout, d, plan.c_layout, &plan.algorithm, lt.workspace,
                     lt.workspace_bytes, stream_of(ctx));
  // An algorithm the heuristic offered may still refuse this configuration when it runs; it then
  // ran nothing, and the plan is retired so that this product takes the unfused route from now on.
  if (status == CUBLAS_STATUS_NOT_SUPPORTED) {
    plan.supported = false;
    return false;
  }
  if (status != CUBLAS_STATUS_SUCCESS) {
    throw_cublas_error(status, "cublasLtMatmul(...)", __FILE__, __LINE__);
  }
  return true;
}

// The forward product as a column-major problem: y^T [out, batch] = W^T [out, in] x^T [in,
// batch], W^T being the row-major W read column-major (ld = out), x^T likewise (ld = in).
LtProblem forward_problem(const DenseShape& s, cublasLtEpilogue_t epilogue) {
  LtProblem p;
  p.m = s.out;
  p.n = s.batch;
  p.k = s.in;
  p.lda = s.out;
  p.ldb = s.in;
  p.ldc = s.out;
  p.epilogue = epilogue;
  return p;
}

// The fused epilogue of the forward, or DEFAULT when the activation must follow in a kernel.
cublasLtEpilogue_t lt_forward_epilogue(DenseEpilogue epilogue) {
  switch (epilogue) {
    case DenseEpilogue::kBias:
      return CUBLASLT_EPILOGUE_BIAS;
    case DenseEpilogue::kBiasRelu:
      return CUBLASLT_EPILOGUE_RELU_BIAS;
    default:
      return CUBLASLT_EPILOGUE_DEFAULT;
  }
}

// y = x W (or z for mish) with cuBLAS at ctx's precision: the product without an epilogue.
void plain_forward_product(const Context& ctx, const DenseShape& s, const float* x,
                           const float* weight, float* out) {
  const GemmShape product{false, false, s.batch, s.out, s.in, s.in, s.out, s.out};
  gemm(ctx, product, 1.f, x, weight, 0.f, out);
}

}  // namespace

void dense_forward(const Context& ctx, const DenseShape& shape, DenseEpilogue epilogue,
                   const float* x, const float* weight, const float* bias, float* y,
                   float* pre_activation, ReluMask* relu_mask, DenseImplementation implementation) {
  check_dense_forward(shape, epilogue, bias, pre_activation, y);
  if (relu_mask != nullptr) relu_mask->written = false;
  if (shape.batch == 0) return;
  if (epilogue == DenseEpilogue::kBiasRelu && relu_mask != nullptr && relu_mask->data != nullptr &&
      implementation == DenseImplementation::kLtEpilogue) {
    // Bias, relu and the mask for the next layer's backward in the product's epilogue.
    LtProblem problem = forward_problem(shape, CUBLASLT_EPILOGUE_RELU_AUX_BIAS);
    problem.aux_ld = relu_mask_column_bits(shape.out);
    if (lt_matmul(ctx, problem, 1.f, weight, x, 0.f, y, bias, relu_mask->data)) {
      relu_mask->written = true;
      return;
    }
  }
  const cublasLtEpilogue_t fused = lt_forward_epilogue(epilogue);
  const bool epilogue_in_product =
      epilogue == DenseEpilogue::kNone || fused != CUBLASLT_EPILOGUE_DEFAULT;
  // Where the product lands: z for mish (the backward reads it), y otherwise.
  float* product_out = needs_pre_activation(epilogue) ? pre_activation : y;
  if (implementation == DenseImplementation::kLtEpilogue) {
    const LtProblem problem =
        forward_problem(shape, epilogue_in_product ? fused : CUBLASLT_EPILOGUE_DEFAULT);
    if (lt_matmul(ctx, problem, 1.f, weight, x, 0.f, product_out, bias)) {
      if (epilogue_in_product) return;
    } else {
      plain_forward_product(ctx, shape, x, weight, product_out);
    }
  } else {
    plain_forward_product(ctx, shape, x, weight, product_out);
  }
  if (epilogue == DenseEpilogue::kNone) return;
  // z += b and y = f(z) in one pass (z kept in place for mish).
  bias_activation_forward(ctx, activation_of(epilogue), product_out, bias,
                          needs_pre_activation(epilogue) ? pre_activation : nullptr, y, shape.batch,
                          shape.out);
}

void dense_backward(const Context& ctx, const DenseShape& shape, DenseEpilogue epilogue,
                    std::int64_t tasks, const float* x, const float* weight, const float* y,
                    const float* pre_activation, const float* dy, float* d_pre, float* dx,
                    float* d_weight, float* d_bias, bool accumulate,
                    DenseImplementation implementation) {
  check_dense_backward(shape, epilogue, tasks, pre_activation, d_pre, d_weight, d_bias);
  const std::int64_t block = shape.batch * shape.out;
  const float beta = accumulate ? 1.f : 0.f;
  const Activation f = activation_of(epilogue);
  const float* dz = dy;
  bool bias_gradient_done = !has_bias(epilogue);
  if (needs_pre_activation_gradient(epilogue)) {
    // dz and the bias gradient in one pass over dy.
    activation_gradient_and_bias_gradient(ctx, f, pre_activation, y, dy, d_pre, shape.batch,
                                          shape.out, tasks, accumulate, d_bias);
    dz = d_pre;
    bias_gradient_done = true;
  }

  // Weight gradient. One upstream with the bias gradient still to do: cuBLASLt's BGRADA epilogue
  // reduces it from the product's A operand (dz^T) in the same pass. The column-major problem is
  // dW^T [out, in] = dz^T [out, batch] (x^T)^T [batch, in].
  bool weight_gradient_done = false;
  if (implementation == DenseImplementation::kLtEpilogue && tasks == 1 && shape.batch > 0) {
    LtProblem problem;
    problem.transpose_b = true;
    problem.m = shape.out;
    problem.n = shape.in;
    problem.k = shape.batch;
    problem.lda = shape.out;
    problem.ldb = shape.in;
    problem.ldc = shape.out;
    problem.epilogue = bias_gradient_done ? CUBLASLT_EPILOGUE_DEFAULT : CUBLASLT_EPILOGUE_BGRADA;
    // The epilogue overwrites its bias output, so accumulation goes through a scratch vector.
    float* bias_target = nullptr;
    if (!bias_gradient_done) {
      bias_target = accumulate
                        ? static_cast<float*>(allocate_async(sizeof(float) * shape.out, ctx.stream))
                        : d_bias;
    }
    weight_gradient_done = lt_matmul(ctx, problem, 1.f, dz, x, beta, d_weight, bias_target);
    if (weight_gradient_done && !bias_gradient_done) {
      if (accumulate) {
        add_kernel<<<grid_for(shape.out), kBlockSize, 0, stream_of(ctx)>>>(bias_target, d_bias,
                                                                           shape.out);
        DRGRAD_CUDA_CHECK_LAUNCH(add_kernel);
      }
      bias_gradient_done = true;
    }
    if (bias_target != nullptr && accumulate) release_async(bias_target, ctx.stream);
  }
  if (!bias_gradient_done) {
    activation_gradient_and_bias_gradient(ctx, Activation::kIdentity, nullptr, nullptr, dy, nullptr,
                                          shape.batch, shape.out, tasks, accumulate, d_bias);
  }
  if (!weight_gradient_done) {
    // d_weight_k = x^T dz_k for every k: one batched product reading x with stride 0.
    const GemmShape weight_product{true,        false,    shape.in,  shape.out,
                                   shape.batch, shape.in, shape.out, shape.out};
    const GemmBatch weight_batch{tasks, 0, block, shape.in * shape.out};
    gemm_strided_batched(ctx, weight_product, weight_batch, 1.f, x, dz, beta, d_weight);
  }

  if (dx == nullptr) return;
  // dx for every task at once: tasks * batch rows times W^T.
  const GemmShape input_product{false,     true,      tasks * shape.batch, shape.in,
                                shape.out, shape.out, shape.out,           shape.in};
  gemm(ctx, input_product, 1.f, dz, weight, 0.f, dx);
}

void dense_backward_into_relu_producer(const Context& ctx, const DenseShape& shape,
                                       DenseEpilogue epilogue, const float* x, const float* weight,
                                       const float* y, const float* pre_activation, const float* dy,
                                       float* d_pre, float* d_weight, float* d_bias,
                                       bool accumulate, const void* producer_relu_mask,
                                       float* producer_d_pre, float* producer_d_bias,
                                       DenseImplementation implementation) {
  if (producer_d_pre == nullptr || producer_d_bias == nullptr) {
    throw std::invalid_argument(
        "dense backward into a relu producer: the producer's d_pre and bias gradient buffers "
        "are required");
  }
  // This layer's own gradients (no dx: the producer's d_pre replaces it).
  dense_backward(ctx, shape, epilogue, 1, x, weight, y, pre_activation, dy, d_pre, nullptr,
                 d_weight, d_bias, accumulate, implementation);
  const float* dz = needs_pre_activation_gradient(epilogue) ? d_pre : dy;
  if (producer_relu_mask != nullptr && implementation == DenseImplementation::kLtEpilogue &&
      shape.batch > 0) {
    // The column-major problem dx^T [in, batch] = W [in, out] dz^T [out, batch], W being the
    // transpose of its column-major view; the epilogue multiplies by the producer's relu' (its
    // mask over [in, batch]) and reduces the producer's bias gradient over the batch.
    LtProblem problem;
    problem.transpose_a = true;
    problem.m = shape.in;
    problem.n = shape.batch;
    problem.k = shape.out;
    problem.lda = shape.out;
    problem.ldb = shape.out;
    problem.ldc = shape.in;
    problem.epilogue = CUBLASLT_EPILOGUE_DRELU_BGRAD;
    problem.aux_ld = relu_mask_column_bits(shape.in);
    // The epilogue overwrites its bias output, so accumulation goes through a scratch vector.
    float* bias_target =
        accumulate ? static_cast<float*>(allocate_async(sizeof(float) * shape.in, ctx.stream))
                   : producer_d_bias;
    const bool done = lt_matmul(ctx, problem, 1.f, weight, dz, 0.f, producer_d_pre, bias_target,
                                producer_relu_mask);
    if (done && accumulate) {
      add_kernel<<<grid_for(shape.in), kBlockSize, 0, stream_of(ctx)>>>(bias_target,
                                                                        producer_d_bias, shape.in);
      DRGRAD_CUDA_CHECK_LAUNCH(add_kernel);
    }
    if (accumulate) release_async(bias_target, ctx.stream);
    if (done) return;
  }
  // Unfused: the dx product, then relu' (read off the producer's output x) and the producer's
  // bias gradient in one pass, in place.
  const GemmShape input_product{false,     true,      shape.batch, shape.in,
                                shape.out, shape.out, shape.out,   shape.in};
  gemm(ctx, input_product, 1.f, dz, weight, 0.f, producer_d_pre);
  activation_gradient_and_bias_gradient(ctx, Activation::kRelu, nullptr, x, producer_d_pre,
                                        producer_d_pre, shape.batch, shape.in, 1, accumulate,
                                        producer_d_bias);
}

bool dense_forward_epilogue_fused(const Context& ctx, const DenseShape& shape,
                                  DenseEpilogue epilogue, const float* x, const float* weight,
                                  const float* bias, float* y) {
  const cublasLtEpilogue_t fused = lt_forward_epilogue(epilogue);
  if (fused == CUBLASLT_EPILOGUE_DEFAULT || shape.batch == 0) return false;
  check_dense_forward(shape, epilogue, bias, nullptr, y);
  const CublasLtResources lt = cublaslt_resources_for(ctx);
  return plan_for(ctx, lt, forward_problem(shape, fused), weight, x, y, bias, nullptr).supported;
}

}  // namespace drgrad::kernels::cuda
