// The MMoE paper's synthetic two-task data with a controllable task correlation (Ma et al.,
// "Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts",
// KDD 2018), plus optional sparse slots so the embedding path of a model sees signal too.
#pragma once

#include <cstdint>

#include "io/generators/generated_data.h"

namespace drgrad::io {

// The data, all parameters drawn from `seed`:
//   u1, u2: orthonormal directions in R^d (Gram-Schmidt on two Gaussian vectors);
//   w1 = c u1,  w2 = c (p u1 + sqrt(1 - p^2) u2);  alpha_i, beta_i ~ N(0, 1), i = 1..m, shared
//   by both tasks;
//   x ~ N(0, I_d);  y_k = w_k . x + sum_i sin(alpha_i w_k . x + beta_i) + eps_k,
//   eps_k ~ N(0, noise_variance) (the paper's N(0, 0.01) read as a variance: stddev 0.1).
// Task relationship: corr(w1 . x, w2 . x) = p exactly. The label correlation equals p / (1 +
// noise_variance / c^2) when num_sinusoids = 0; with sinusoids it is still 0 at p = 0 and grows
// with p on [0, 1], but for p < 0 the sinusoids' even part can make it positive for some seeds
// (e.g. seed 3 at p = -0.5 gives about +0.1). Use num_sinusoids = 0 for exactly signed conflict.
// Schema: dense features x0 .. x{d-1}; labels y1, y2; sparse slots s0 .. s{S-1}.
//
// Sparse slot j (when sparse_slots > 0) holds exactly one id per sample:
//   id_j = floor(V * Phi(r_j . x)), clamped to [0, V - 1],
// where Phi is the standard normal CDF and r_j a fixed unit vector drawn from `seed` as the
// normalised sum of a random unit vector in the tasks' plane span(u1, u2) and a random unit
// vector of R^d. Since r_j . x ~ N(0, 1), ids are uniform over the V buckets, and because r_j
// leans towards the tasks' plane (cosine about 0.7) the ids carry information about both labels.
// The dense block still holds all of x.
//
// Binary labels (binary_labels = true): y_k is replaced by 1 when y_k > t_k and 0 otherwise,
// where t_k is the median of task k's label distribution, estimated once per task from 100,001
// draws of a calibration stream of `seed` (w_k . x ~ N(0, c^2) exactly, so only the 1-D law is
// sampled). Thresholds depend on the seed and options but not on num_samples or sample_stream,
// so train and eval sets generated separately share them; about half the labels are positive.
//
// Determinism: the same options give the same batch. Samples come from stream `sample_stream`
// of `seed`; use different streams (e.g. 0 for training, 1 for evaluation) for independent sets
// of the same task. The first n samples do not depend on num_samples.
struct MmoeGeneratorOptions {
  std::int64_t num_samples = 20000;
  std::uint64_t seed = 1;
  std::uint64_t sample_stream = 0;
  double correlation = 0.5;         // p, in [-1, 1]
  std::int64_t input_dim = 100;     // d, at least 2
  double weight_scale = 1.0;        // c, > 0
  std::int64_t num_sinusoids = 10;  // m, >= 0
  double noise_variance = 0.01;     // variance of eps_k, >= 0
  bool binary_labels = true;
  std::int64_t sparse_slots = 0;         // S, >= 0
  std::int64_t sparse_vocabulary = 100;  // V, >= 1 (used when sparse_slots > 0)
};

// Throws std::invalid_argument naming the option when an option is out of range.
GeneratedData generate_mmoe(const MmoeGeneratorOptions& options);

}  // namespace drgrad::io
