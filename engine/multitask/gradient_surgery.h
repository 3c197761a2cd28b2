// Gradient surgery baselines on the shared parameters of a multi-task model: PCGrad and CAGrad
// applied to the per-task gradients that the layers' stacked backward passes left in
// Parameter::task_gradients. The parameters of the given set count as one concatenated vector
// (e.g. the groups "backbone" and "embeddings"), without copying: its Gram matrix is the sum of
// the per-parameter Gram matrices.
//
// Memory: the per-task gradients take tasks x (shared parameter count) values (for embedding
// tables: tasks x touched rows x dim), on top of the ordinary gradients.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/parameter_store.h"
#include "kernels/core/device.h"
#include "kernels/multitask/gradient_surgery.h"

namespace drgrad::engine {

enum class SurgeryMethod { kPcgrad, kCagrad };

// "pcgrad" | "cagrad"; throws std::invalid_argument naming the text and the choices otherwise.
SurgeryMethod parse_surgery_method(const std::string& name);
const char* surgery_method_name(SurgeryMethod method);

struct GradientSurgeryOptions {
  SurgeryMethod method = SurgeryMethod::kPcgrad;
  // PCGrad: shuffle and the seed of the first step; step s draws its orders from seed + s.
  kernels::PcgradOptions pcgrad;
  // CAGrad: c (default 0.4) and the 1 / (1 + c^2) rescaling.
  kernels::CagradOptions cagrad;
};

class GradientSurgery {
 public:
  GradientSurgery(kernels::Context ctx, GradientSurgeryOptions options);

  // Reads Parameter::task_gradients of every parameter in `parameters` (all with the same task
  // count K: dense [K, numel], row-sparse [K, capacity, dim] as left by backward_stacked),
  // computes the Gram matrix of the concatenated per-task gradients (taking a parameter's
  // Parameter::task_gram instead of reading its gradients when the stacked backward left a
  // current one, see TaskGram::kDuringBackward; summed on ctx's device, then read to the host
  // once), the method's weights once for the whole set, and OVERWRITES Parameter::gradient with the
  // combined gradient sum_k weights[k] g_k (dense: the parameter's shape; row-sparse: [capacity,
  // dim], matching touched_rows_device; rows past the touched count combine zeros and the update
  // never reads them). The per-task buffers are left as they are. Returns the weights. Throws
  // std::logic_error naming a parameter without per-task gradients or with another K.
  const std::vector<double>& apply(const std::vector<Parameter*>& parameters);
  // The same for every parameter of the named groups of `store`.
  const std::vector<double>& apply(ParameterStore& store, const std::vector<std::string>& groups);

  const GradientSurgeryOptions& options() const { return options_; }
  std::int64_t steps() const { return steps_; }
  // The last step's K x K Gram matrix (row-major) and weights, for logging.
  const std::vector<double>& last_gram() const { return gram_; }
  const std::vector<double>& last_weights() const { return weights_; }
  // How many parameters of the last step contributed the Gram their stacked backward left
  // (the others were read once more by the Gram pass).
  std::int64_t last_gram_from_backward() const { return gram_from_backward_; }

 private:
  kernels::Context ctx_;
  GradientSurgeryOptions options_;
  std::int64_t steps_ = 0;
  std::vector<double> gram_, weights_;
  Tensor device_gram_;  // K x K float64 on ctx's device, the step's running sum
  std::int64_t gram_from_backward_ = 0;
};

}  // namespace drgrad::engine
