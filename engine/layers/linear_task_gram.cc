// Linear's stacked backward for gradient surgery: the per-task weight and bias gradients and the
// tasks' Gram matrix of them in one op (kernels/multitask/task_gradient_gram.h), so that PCGrad
// and CAGrad need not read those gradients again.
#include "engine/layers/linear.h"
#include "engine/multitask/task_gradients.h"
#include "kernels/activation/activation.h"
#include "kernels/dense/gemm.h"
#include "kernels/multitask/task_gradient_gram.h"

namespace drgrad::engine {

template <typename T>
Tensor Linear<T>::stacked_backward_with_gram(const Tensor& dy_stacked, T* weight_gradients,
                                             T* bias_gradients, double* weight_gram,
                                             double* bias_gram, bool need_input_gradient) {
  check_stacked_upstream(dy_stacked);
  const std::int64_t batch = input_.dim(0);
  const std::int64_t tasks = dy_stacked.dim(0);
  const std::int64_t block = batch * out_features_;
  // d_pre_k = dy_k * f'(z): the activation is the same for every task. Forward keeps z only
  // where the derivative needs it (mish); relu's and sigmoid's derivatives follow from the
  // output y (relu: y > 0 exactly where z > 0; sigmoid reads only y), so y stands in for z.
  const T* d_pre = dy_stacked.data<T>();
  Tensor d_pre_storage;
  if (activation_ != kernels::Activation::kIdentity) {
    d_pre_storage = Tensor(dy_stacked.shape(), dy_stacked.dtype(), dy_stacked.device());
    const Tensor& activation_input = pre_activation_.defined() ? pre_activation_ : output_;
    for (std::int64_t k = 0; k < tasks; ++k) {
      kernels::activation_backward<T>(ctx_, activation_, activation_input.data<T>(),
                                      output_.data<T>(), dy_stacked.data<T>() + k * block,
                                      d_pre_storage.data<T>() + k * block, block);
    }
    d_pre = d_pre_storage.data<T>();
  }
  // dW_k += x^T d_pre_k, db_k += column sums of d_pre_k, and the Gram of the accumulated
  // results (overwritten: it describes everything in the buffers, earlier calls included).
  const kernels::TaskGradientShape shape{tasks, batch, in_features_, out_features_};
  kernels::task_gradients_with_gram<T>(ctx_, shape, input_.data<T>(), d_pre, T(1),
                                       {weight_gradients, bias_gradients, weight_gram, bias_gram},
                                       kernels::GramUpdate::kOverwrite);
  mark_task_gram_current(*weight_);
  mark_task_gram_current(*bias_);
  if (!need_input_gradient) return Tensor();
  // dx for all tasks: the K upstreams are K * batch rows of one product with W^T.
  Tensor dx(Shape{tasks, batch, in_features_}, dtype_of<T>(), dy_stacked.device());
  const kernels::GemmShape input_shape{false,         true,          tasks * batch, in_features_,
                                       out_features_, out_features_, out_features_, in_features_};
  kernels::gemm<T>(ctx_, input_shape, T(1), d_pre, weight_->value.data<T>(), T(0), dx.data<T>());
  return dx;
}

template Tensor Linear<float>::stacked_backward_with_gram(const Tensor&, float*, float*, double*,
                                                          double*, bool);
template Tensor Linear<double>::stacked_backward_with_gram(const Tensor&, double*, double*, double*,
                                                           double*, bool);

}  // namespace drgrad::engine
