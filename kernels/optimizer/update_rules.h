// The optimizer update rules (SGD with momentum, AdamW, Adagrad) as per-element functions that
// compile for both the host and the device, so that the CPU twins, the CUDA kernels and the fused
// DRGrad route-and-update pass perform the very same arithmetic on every element.
#pragma once

#include <cmath>
#include <cstdint>

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

// v = momentum v + (g + weight_decay w);  w -= learning_rate v.
// weight_decay is plain L2 regularization (added to the gradient, so it also enters the
// velocity). momentum = 0 is plain SGD.
struct SgdOptions {
  float learning_rate = 0.01f;
  float momentum = 0.f;
  float weight_decay = 0.f;
};

// AdamW (Adam with decoupled weight decay, Loshchilov & Hutter), at step t >= 1:
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   m_hat = m / (1 - beta1^t);  v_hat = v / (1 - beta2^t)
//   w -= learning_rate (m_hat / (sqrt(v_hat) + epsilon) + weight_decay w)
// The decay uses w before the step and never enters the moments; weight_decay = 0 is Adam.
struct AdamOptions {
  float learning_rate = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float epsilon = 1e-8f;
  float weight_decay = 0.f;
};

// g' = g + weight_decay w (L2);  accumulator += g'^2;  w -= learning_rate g' / (sqrt(acc) + eps).
// The accumulator's initial value is whatever the caller fills it with (0 in PyTorch, 0.1 in
// TensorFlow); a positive start keeps the first steps from being of size ~learning_rate.
struct AdagradOptions {
  float learning_rate = 0.01f;
  float epsilon = 1e-10f;
  float weight_decay = 0.f;
};

// 1 - beta1^t and 1 - beta2^t, computed in double on the host (beta2^t for beta2 near 1 and large
// t loses digits in float) and converted to the element type where they are used.
struct AdamBiasCorrection {
  double first = 1.0, second = 1.0;
};
inline AdamBiasCorrection adam_bias_correction(const AdamOptions& options, std::int64_t step) {
  return {1.0 - std::pow(double(options.beta1), double(step)),
          1.0 - std::pow(double(options.beta2), double(step))};
}

// One optimizer step's rule for a group of parameters, as a plain value a kernel can take by
// argument: which rule, its options, and Adam's bias corrections for this step.
enum class UpdateKind : int { kSgd = 0, kAdam = 1, kAdagrad = 2 };
struct UpdateRule {
  UpdateKind kind = UpdateKind::kSgd;
  SgdOptions sgd;
  AdamOptions adam;
  AdagradOptions adagrad;
  AdamBiasCorrection adam_correction;
  // Where set, the bias corrections are read from here instead (memory on the device the update
  // runs on), so that an update captured once in a CUDA graph follows the step count the host
  // writes there before every replay; null: adam_correction as passed.
  const AdamBiasCorrection* adam_correction_in_memory = nullptr;
  // The state arrays a rule reads and writes: SGD its velocity (may be null when momentum is 0),
  // Adam the first and second moments, Adagrad its accumulator.
  int state_count() const { return kind == UpdateKind::kAdam ? 2 : 1; }
};

inline UpdateRule sgd_rule(const SgdOptions& options) {
  UpdateRule rule;
  rule.kind = UpdateKind::kSgd;
  rule.sgd = options;
  return rule;
}
inline UpdateRule adam_rule(const AdamOptions& options, std::int64_t step) {
  UpdateRule rule;
  rule.kind = UpdateKind::kAdam;
  rule.adam = options;
  rule.adam_correction = adam_bias_correction(options, step);
  return rule;
}
inline UpdateRule adagrad_rule(const AdagradOptions& options) {
  UpdateRule rule;
  rule.kind = UpdateKind::kAdagrad;
  rule.adagrad = options;
  return rule;
}

// The per-element steps. Each reads the weight before its update (for the decay) and writes the
// weight and the state once.

template <typename T>
DRGRAD_HOST_DEVICE inline void sgd_element(const SgdOptions& options, T& weight, T gradient,
                                           T* velocity) {
  const T regularized = gradient + T(options.weight_decay) * weight;
  if (velocity == nullptr) {
    weight -= T(options.learning_rate) * regularized;
    return;
  }
  *velocity = T(options.momentum) * *velocity + regularized;
  weight -= T(options.learning_rate) * *velocity;
}

template <typename T>
DRGRAD_HOST_DEVICE inline void adam_element(const AdamOptions& options, T first_correction,
                                            T second_correction, T& weight, T gradient,
                                            T& first_moment, T& second_moment) {
  first_moment = T(options.beta1) * first_moment + (T(1) - T(options.beta1)) * gradient;
  second_moment =
      T(options.beta2) * second_moment + (T(1) - T(options.beta2)) * gradient * gradient;
  const T first_unbiased = first_moment / first_correction;
  const T second_unbiased = second_moment / second_correction;
  weight -= T(options.learning_rate) *
            (first_unbiased / (std::sqrt(second_unbiased) + T(options.epsilon)) +
             T(options.weight_decay) * weight);
}

template <typename T>
DRGRAD_HOST_DEVICE inline void adagrad_element(const AdagradOptions& options, T& weight, T gradient,
                                               T& accumulator) {
  const T regularized = gradient + T(options.weight_decay) * weight;
  accumulator += regularized * regularized;
  weight -= T(options.learning_rate) * regularized / (std::sqrt(accumulator) + T(options.epsilon));
}

// One element under `rule`: state_a is the velocity (SGD), first moment (Adam) or accumulator
// (Adagrad); state_b the second moment (Adam only).
template <typename T>
DRGRAD_HOST_DEVICE inline void apply_update_rule(const UpdateRule& rule, T& weight, T gradient,
                                                 T* state_a, T* state_b) {
  switch (rule.kind) {
    case UpdateKind::kSgd:
      sgd_element(rule.sgd, weight, gradient, state_a);
      break;
    case UpdateKind::kAdam: {
      const AdamBiasCorrection& correction = rule.adam_correction_in_memory != nullptr
                                                 ? *rule.adam_correction_in_memory
                                                 : rule.adam_correction;
      adam_element(rule.adam, T(correction.first), T(correction.second), weight, gradient, *state_a,
                   *state_b);
      break;
    }
    case UpdateKind::kAdagrad:
      adagrad_element(rule.adagrad, weight, gradient, *state_a);
      break;
  }
}

}  // namespace drgrad::kernels
