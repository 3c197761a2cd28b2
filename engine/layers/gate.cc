// SoftmaxGate: a linear layer to gate logits, row softmax, and the gated combination.
#include "engine/layers/gate.h"

#include <stdexcept>

namespace drgrad::engine {

namespace {
kernels::ExpertSelection make_selection(const std::vector<int>& selected) {
  if (selected.empty() ||
      selected.size() > static_cast<std::size_t>(kernels::ExpertSelection::kMaxExperts)) {
    throw std::invalid_argument("a gate mixes between 1 and " +
                                std::to_string(kernels::ExpertSelection::kMaxExperts) +
                                " experts, got " + std::to_string(selected.size()));
  }
  kernels::ExpertSelection selection;
  selection.count = static_cast<int>(selected.size());
  for (std::size_t i = 0; i < selected.size(); ++i) selection.index[i] = selected[i];
  return selection;
}
}  // namespace

template <typename T>
SoftmaxGate<T>::SoftmaxGate(LayerBuilder& builder, const std::string& name,
                            const std::string& group, std::int64_t in_features,
                            const std::vector<int>& selected)
    : ctx_(builder.ctx),
      selection_(make_selection(selected)),
      logits_(builder, name, group, in_features, static_cast<std::int64_t>(selected.size())) {}

template <typename T>
Tensor SoftmaxGate<T>::forward(const Tensor& x, const Tensor& experts) {
  const std::int64_t batch = x.dim(0);
  const std::int64_t dim = experts.dim(2);
  experts_ = experts;
  Tensor logits = logits_.forward(x);
  probabilities_ = Tensor(logits.shape(), logits.dtype(), logits.device());
  kernels::softmax_rows_forward<T>(ctx_, logits.data<T>(), probabilities_.data<T>(), batch,
                                   selection_.count);
  Tensor out(Shape{batch, dim}, dtype_of<T>(), x.device());
  kernels::gated_combination_forward<T>(ctx_, experts.data<T>(), probabilities_.data<T>(),
                                        selection_, batch, dim, out.data<T>());
  return out;
}

template <typename T>
Tensor SoftmaxGate<T>::backward(const Tensor& d_out, Tensor& d_experts, bool need_input_gradient) {
  const std::int64_t batch = d_out.dim(0);
  const std::int64_t dim = d_out.dim(1);
  Tensor d_probabilities(probabilities_.shape(), probabilities_.dtype(), d_out.device());
  kernels::gated_combination_backward<T>(ctx_, experts_.data<T>(), probabilities_.data<T>(),
                                         d_out.data<T>(), selection_, batch, dim,
                                         d_experts.data<T>(), d_probabilities.data<T>());
  Tensor d_logits(probabilities_.shape(), probabilities_.dtype(), d_out.device());
  kernels::softmax_rows_backward<T>(ctx_, probabilities_.data<T>(), d_probabilities.data<T>(),
                                    d_logits.data<T>(), batch, selection_.count);
  return logits_.backward(d_logits, need_input_gradient);
}

template class SoftmaxGate<float>;
template class SoftmaxGate<double>;

}  // namespace drgrad::engine
