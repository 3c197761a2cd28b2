// cuDNN's fused matmul + bias + relu as a backend-API operation graph, for the dense epilogue
// benchmark's comparison with cuBLASLt. Only compiled when CMake found cuDNN (DRGRAD_WITH_CUDNN).
#pragma once

#if defined(DRGRAD_WITH_CUDNN)

#include <cuda_runtime.h>
#include <cudnn_graph.h>

#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace drgrad::bench {

[[noreturn]] inline void throw_cudnn_error(cudnnStatus_t status, const char* call, const char* file,
                                           int line) {
  throw std::runtime_error(std::string("cuDNN error ") + cudnnGetErrorString(status) + " in " +
                           call + " at " + file + ":" + std::to_string(line));
}

#define DRGRAD_CUDNN_CHECK(call)                                                           \
  do {                                                                                     \
    const cudnnStatus_t drgrad_cudnn_status_ = (call);                                     \
    if (drgrad_cudnn_status_ != CUDNN_STATUS_SUCCESS)                                      \
      ::drgrad::bench::throw_cudnn_error(drgrad_cudnn_status_, #call, __FILE__, __LINE__); \
  } while (0)

// One backend descriptor, destroyed with its owner.
class CudnnDescriptor {
 public:
  explicit CudnnDescriptor(cudnnBackendDescriptorType_t type) {
    DRGRAD_CUDNN_CHECK(cudnnBackendCreateDescriptor(type, &descriptor_));
  }
  CudnnDescriptor(const CudnnDescriptor&) = delete;
  CudnnDescriptor& operator=(const CudnnDescriptor&) = delete;
  CudnnDescriptor(CudnnDescriptor&& other) noexcept
      : descriptor_(std::exchange(other.descriptor_, nullptr)) {}
  ~CudnnDescriptor() {
    if (descriptor_ != nullptr) static_cast<void>(cudnnBackendDestroyDescriptor(descriptor_));
  }
  cudnnBackendDescriptor_t get() const { return descriptor_; }

  template <typename Value>
  void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, const Value* values,
           std::int64_t count = 1) {
    DRGRAD_CUDNN_CHECK(cudnnBackendSetAttribute(descriptor_, name, type, count, values));
  }
  void set_descriptor(cudnnBackendAttributeName_t name, const CudnnDescriptor& value) {
    cudnnBackendDescriptor_t raw = value.get();
    set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, &raw);
  }
  void finalize() { DRGRAD_CUDNN_CHECK(cudnnBackendFinalize(descriptor_)); }

 private:
  cudnnBackendDescriptor_t descriptor_ = nullptr;
};

// y = relu(x W + b) for row-major x [batch, in], W [in, out], b [out], y [batch, out], as one
// cuDNN operation graph (matmul -> pointwise add -> pointwise relu, intermediates virtual). The
// first engine of heuristic A that finalizes is used; with allow_tensor_cores false, engines with
// the tensor-core numerical note (TF32 products on fp32 data) are skipped, so the products stay
// fp32. ready() is false, with why_not() saying why, when no engine fits.
class CudnnDenseReluGraph {
 public:
  CudnnDenseReluGraph(cudaStream_t stream, std::int64_t batch, std::int64_t in, std::int64_t out,
                      bool allow_tensor_cores) {
    DRGRAD_CUDNN_CHECK(cudnnCreate(&handle_));
    DRGRAD_CUDNN_CHECK(cudnnSetStream(handle_, stream));
    try {
      build(batch, in, out, allow_tensor_cores);
    } catch (const std::exception& error) {
      why_not_ = error.what();
      plan_.reset();
    }
  }
  CudnnDenseReluGraph(const CudnnDenseReluGraph&) = delete;
  CudnnDenseReluGraph& operator=(const CudnnDenseReluGraph&) = delete;
  ~CudnnDenseReluGraph() {
    plan_.reset();
    if (workspace_ != nullptr) static_cast<void>(cudaFree(workspace_));
    if (handle_ != nullptr) static_cast<void>(cudnnDestroy(handle_));
  }

  bool ready() const { return plan_ != nullptr; }
  const std::string& why_not() const { return why_not_; }
  // The chosen engine's global index and whether it uses tensor cores.
  const std::string& engine() const { return engine_; }

  void run(const float* x, const float* weight, const float* bias, float* y) {
    if (!ready()) throw std::runtime_error("cuDNN dense graph not ready: " + why_not_);
    const std::array<void*, 4> pointers{const_cast<float*>(x), const_cast<float*>(weight),
                                        const_cast<float*>(bias), y};
    if (pack_ == nullptr || pointers != pack_pointers_) {
      pack_ = std::make_unique<CudnnDescriptor>(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
      const std::array<std::int64_t, 4> ids{kX, kWeight, kBias, kY};
      pack_->set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, ids.data(), 4);
      pack_->set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, pointers.data(), 4);
      pack_->set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, &workspace_);
      pack_->finalize();
      pack_pointers_ = pointers;
    }
    DRGRAD_CUDNN_CHECK(cudnnBackendExecute(handle_, plan_->get(), pack_->get()));
  }

 private:
  enum : std::int64_t { kX = 1, kWeight, kBias, kProduct, kPreActivation, kY };

  static CudnnDescriptor tensor(std::int64_t id, std::array<std::int64_t, 3> dims,
                                bool is_virtual) {
    CudnnDescriptor t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
    const cudnnDataType_t type = CUDNN_DATA_FLOAT;
    const std::array<std::int64_t, 3> strides{dims[1] * dims[2], dims[2], 1};
    const std::int64_t alignment = 16;
    t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, &type);
    t.set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, dims.data(), 3);
    t.set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, strides.data(), 3);
    t.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, &id);
    t.set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, &alignment);
    t.set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, &is_virtual);
    t.finalize();
    return t;
  }

  static CudnnDescriptor pointwise(cudnnPointwiseMode_t mode) {
    CudnnDescriptor p(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    const cudnnDataType_t precision = CUDNN_DATA_FLOAT;
    p.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, &mode);
    p.set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, &precision);
    p.finalize();
    return p;
  }

  void build(std::int64_t batch, std::int64_t in, std::int64_t out, bool allow_tensor_cores) {
    // Matmul in cuDNN is batched: [1, M, K] x [1, K, N] -> [1, M, N].
    const CudnnDescriptor x = tensor(kX, {1, batch, in}, false);
    const CudnnDescriptor weight = tensor(kWeight, {1, in, out}, false);
    const CudnnDescriptor bias = tensor(kBias, {1, 1, out}, false);
    const CudnnDescriptor product = tensor(kProduct, {1, batch, out}, true);
    const CudnnDescriptor pre_activation = tensor(kPreActivation, {1, batch, out}, true);
    const CudnnDescriptor y = tensor(kY, {1, batch, out}, false);

    CudnnDescriptor matmul(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    matmul.set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, &compute);
    matmul.finalize();
    CudnnDescriptor matmul_op(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    matmul_op.set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_ADESC, x);
    matmul_op.set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_BDESC, weight);
    matmul_op.set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_CDESC, product);
    matmul_op.set_descriptor(CUDNN_ATTR_OPERATION_MATMUL_DESC, matmul);
    matmul_op.finalize();

    const CudnnDescriptor add = pointwise(CUDNN_POINTWISE_ADD);
    CudnnDescriptor add_op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    add_op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, add);
    add_op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, product);
    add_op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, bias);
    add_op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, pre_activation);
    add_op.finalize();

    const CudnnDescriptor relu = pointwise(CUDNN_POINTWISE_RELU_FWD);
    CudnnDescriptor relu_op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    relu_op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, relu);
    relu_op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, pre_activation);
    relu_op.set_descriptor(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
    relu_op.finalize();

    // The handle attributes are deprecated in cuDNN 9.x in favour of device-property
    // descriptors, but remain the form every 9.x release accepts.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    CudnnDescriptor graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
    const std::array<cudnnBackendDescriptor_t, 3> ops{matmul_op.get(), add_op.get(), relu_op.get()};
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, ops.data(), 3);
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, &handle_);
    graph.finalize();

    CudnnDescriptor heuristics(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
    heuristics.set_descriptor(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph);
    heuristics.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, &mode);
    heuristics.finalize();
    std::int64_t count = 0;
    DRGRAD_CUDNN_CHECK(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr));
    if (count == 0) throw std::runtime_error("heuristic A offers no engine for this graph");
    std::vector<CudnnDescriptor> configs;
    std::vector<cudnnBackendDescriptor_t> raw_configs;
    for (std::int64_t i = 0; i < count; ++i) {
      configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
      raw_configs.push_back(configs.back().get());
    }
    std::int64_t returned = 0;
    DRGRAD_CUDNN_CHECK(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &returned,
                                                raw_configs.data()));
    std::string rejected;
    for (std::int64_t i = 0; i < returned; ++i) {
      CudnnDescriptor engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
      cudnnBackendDescriptor_t raw_engine = engine.get();
      std::int64_t engines = 0;
      DRGRAD_CUDNN_CHECK(cudnnBackendGetAttribute(raw_configs[i], CUDNN_ATTR_ENGINECFG_ENGINE,
                                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &engines,
                                                  &raw_engine));
      std::array<cudnnBackendNumericalNote_t, CUDNN_NUMERICAL_NOTE_TYPE_COUNT> notes{};
      std::int64_t note_count = 0;
      DRGRAD_CUDNN_CHECK(cudnnBackendGetAttribute(raw_engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
                                                  CUDNN_TYPE_NUMERICAL_NOTE, notes.size(),
                                                  &note_count, notes.data()));
      bool tensor_cores = false;
      for (std::int64_t n = 0; n < note_count; ++n) {
        tensor_cores = tensor_cores || notes[n] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE;
      }
      std::int64_t global_index = -1, index_count = 0;
      DRGRAD_CUDNN_CHECK(cudnnBackendGetAttribute(raw_engine, CUDNN_ATTR_ENGINE_GLOBAL_INDEX,
                                                  CUDNN_TYPE_INT64, 1, &index_count,
                                                  &global_index));
      const std::string name = "engine " + std::to_string(global_index) +
                               (tensor_cores ? " (tensor cores)" : " (no tensor cores)");
      if (tensor_cores && !allow_tensor_cores) {
        rejected += name + ": tensor cores not allowed at this precision; ";
        continue;
      }
      auto plan = std::make_unique<CudnnDescriptor>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
      plan->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, &handle_);
      cudnnBackendDescriptor_t config = raw_configs[i];
      plan->set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, &config);
      const cudnnStatus_t status = cudnnBackendFinalize(plan->get());
      if (status != CUDNN_STATUS_SUCCESS) {
        rejected += name + ": " + cudnnGetErrorString(status) + "; ";
        continue;
      }
      std::int64_t workspace_bytes = 0, size_count = 0;
      DRGRAD_CUDNN_CHECK(
          cudnnBackendGetAttribute(plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                   CUDNN_TYPE_INT64, 1, &size_count, &workspace_bytes));
      if (workspace_bytes > 0 && cudaMalloc(&workspace_, workspace_bytes) != cudaSuccess) {
        throw std::runtime_error(name + ": cannot allocate its workspace of " +
                                 std::to_string(workspace_bytes) + " bytes");
      }
      engine_ = name + ", workspace " + std::to_string(workspace_bytes) + " bytes";
      plan_ = std::move(plan);
      return;
    }
#pragma GCC diagnostic pop
    throw std::runtime_error("no engine of " + std::to_string(returned) +
                             " finalized: " + rejected);
  }

  cudnnHandle_t handle_ = nullptr;
  std::unique_ptr<CudnnDescriptor> plan_, pack_;
  std::array<void*, 4> pack_pointers_{};
  void* workspace_ = nullptr;
  std::string why_not_, engine_;
};

}  // namespace drgrad::bench

#endif  // DRGRAD_WITH_CUDNN
