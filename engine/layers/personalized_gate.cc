// PersonalizedGate: a sigmoid linear layer on e_p and an element-wise product with v.
#include "engine/layers/personalized_gate.h"

#include "kernels/vector/vector_ops.h"

namespace drgrad::engine {

template <typename T>
PersonalizedGate<T>::PersonalizedGate(LayerBuilder& builder, const std::string& name,
                                      const std::string& group, std::int64_t personal_features,
                                      std::int64_t width, bool stop_gradient)
    : ctx_(builder.ctx),
      stop_gradient_(stop_gradient),
      logits_(builder, name, group, personal_features, width, kernels::Activation::kSigmoid) {}

template <typename T>
Tensor PersonalizedGate<T>::forward(const Tensor& v, const Tensor& personal) {
  v_ = v;
  gate_ = logits_.forward(personal);
  Tensor out(v.shape(), v.dtype(), v.device());
  kernels::multiply<T>(ctx_, v.numel(), T(2), v.data<T>(), gate_.data<T>(), out.data<T>());
  return out;
}

template <typename T>
std::pair<Tensor, Tensor> PersonalizedGate<T>::backward(const Tensor& d_out) {
  Tensor d_v(d_out.shape(), d_out.dtype(), d_out.device());
  kernels::multiply<T>(ctx_, d_out.numel(), T(2), gate_.data<T>(), d_out.data<T>(), d_v.data<T>());
  Tensor d_gate(d_out.shape(), d_out.dtype(), d_out.device());
  kernels::multiply<T>(ctx_, d_out.numel(), T(2), v_.data<T>(), d_out.data<T>(), d_gate.data<T>());
  Tensor d_personal = logits_.backward(d_gate, !stop_gradient_);
  return {d_v, d_personal};
}

template class PersonalizedGate<float>;
template class PersonalizedGate<double>;

}  // namespace drgrad::engine
