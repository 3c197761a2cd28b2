// Optimizers over a ParameterStore: SGD with momentum, Adam (decoupled weight decay) and Adagrad.
// Dense parameters update in full; embedding tables update only the rows the batch touched
// (lazy updates, see kernels/optimizer/optimizer.h). The optimizer owns its state tensors and
// exposes them by name for checkpoints.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "engine/core/parameter_store.h"

namespace drgrad::engine {

enum class OptimizerKind { kSgd, kAdam, kAdagrad };
OptimizerKind parse_optimizer(const std::string& name);

struct OptimizerSpec {
  OptimizerKind kind = OptimizerKind::kAdam;
  double learning_rate = 1e-3;
  double momentum = 0.9;  // sgd
  double beta1 = 0.9, beta2 = 0.999, epsilon = 1e-8;
  double weight_decay = 0.0;
  double initial_accumulator = 0.1;      // adagrad
  double embedding_learning_rate = 0.0;  // 0: same as learning_rate
};

template <typename T>
class Optimizer {
 public:
  Optimizer(const OptimizerSpec& spec, const ParameterStore& store);

  // One update of every parameter from its current gradient.
  void step(ParameterStore& store);
  std::int64_t steps_taken() const { return steps_; }
  void set_steps_taken(std::int64_t steps) { steps_ = steps; }

  // "<parameter>/<slot>" -> state tensor (e.g. "tower/ctr/layer0/weight/first_moment").
  std::map<std::string, Tensor>& state() { return state_; }
  const std::map<std::string, Tensor>& state() const { return state_; }
  const OptimizerSpec& spec() const { return spec_; }

 private:
  OptimizerSpec spec_;
  std::int64_t steps_ = 0;
  std::map<std::string, Tensor> state_;
  Tensor& state_of(const Parameter& parameter, const char* slot);
};

}  // namespace drgrad::engine
