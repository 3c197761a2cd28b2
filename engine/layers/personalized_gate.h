// The personalized gate of DRGrad (PPNet-style) on the shared representation:
// out = 2 * v (*) sigmoid(e_p W + b), where e_p are the embeddings of the configured personal id
// slots. The factor 2 keeps the gate near identity at the start. With stop_gradient, the gate
// learns W and b but sends no gradient into the embeddings it reads (as PPNet does).
#pragma once

#include <string>
#include <utility>

#include "engine/layers/linear.h"

namespace drgrad::engine {

template <typename T>
class PersonalizedGate {
 public:
  PersonalizedGate(LayerBuilder& builder, const std::string& name, const std::string& group,
                   std::int64_t personal_features, std::int64_t width, bool stop_gradient);

  // v: [batch, width]; personal: [batch, personal_features].
  Tensor forward(const Tensor& v, const Tensor& personal);
  // Returns (d_v, d_personal); d_personal is undefined when the gradient is stopped.
  std::pair<Tensor, Tensor> backward(const Tensor& d_out);

  bool stop_gradient() const { return stop_gradient_; }

 private:
  kernels::Context ctx_;
  bool stop_gradient_;
  Linear<T> logits_;  // with a sigmoid activation
  Tensor v_, gate_;
};

}  // namespace drgrad::engine
