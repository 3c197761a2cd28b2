// Per-element arithmetic of the softmax gate, compiled for the host and the device so that the
// CPU twins and the CUDA kernels in kernels/gate/ compute each element with the same expression.
#pragma once

// The same definition as in the other shared-arithmetic headers (identical redefinitions are
// allowed, the guard only spares the repetition).
#if !defined(DRGRAD_HOST_DEVICE)
#if defined(__CUDACC__)
#define DRGRAD_HOST_DEVICE __host__ __device__
#else
#define DRGRAD_HOST_DEVICE
#endif
#endif

namespace drgrad::kernels {

// One term of the gated combination: sum + weight * expert_value.
template <typename T>
DRGRAD_HOST_DEVICE inline T gated_term(T sum, T weight, T expert_value) {
  return sum + weight * expert_value;
}

// The softmax backward for one column: d_logit = p * (d_p - inner), where inner is the row's
// sum_c p[c] * d_p[c] (the gradient of the normalisation).
template <typename T>
DRGRAD_HOST_DEVICE inline T softmax_logit_gradient(T probability, T d_probability, T inner) {
  return probability * (d_probability - inner);
}

}  // namespace drgrad::kernels
