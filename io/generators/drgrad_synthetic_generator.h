// The DRGrad paper's synthetic two-task data (Liu et al., AAAI 2025), whose second label is the
// first scaled by cos(theta): cooperating tasks for cos(theta) > 0, conflicting ones below 0.
#pragma once

#include <cstdint>

#include "io/generators/generated_data.h"

namespace drgrad::io {

// The paper prints, for a feature vector x,
//   label1 = 10 * (4 x^2 / |x^2| + 5 exp(x / |x|) + 6 sin(x) + N(0.01, 0.002))
//   label2 = cos(theta) * label1 + N(0.01, 0.002)
// and leaves open how the vector terms become a scalar and how labels become binary. Here:
//   x ~ N(0, I_F) with F = num_features (32);
//   x^2 / |x^2| is the element-wise square divided by its Euclidean norm, exp(x / |x|) and sin(x)
//   act element-wise;
//   the vector sum 4 x^2/|x^2| + 5 exp(x/|x|) + 6 sin(x) is reduced to a scalar by a dot product
//   with one fixed unit vector v drawn from `seed` (uniform on the sphere), so
//   label1 = 10 * (v . (4 x^2/|x^2| + 5 exp(x/|x|) + 6 sin(x)) + n1),
//   label2 = cos_theta * label1 + n2,
//   n1, n2 ~ N(noise_mean, noise_variance) (the printed N(0.01, 0.002) read as mean, variance).
// Features: the LAST num_sparse (6) features are sparse: slot x{i} holds one id per sample,
// floor(V * Phi(x_i)) clamped to [0, V - 1] (Phi the standard normal CDF, so ids are uniform
// over V = sparse_vocabulary buckets); the model sees only the bucket, the labels use the exact
// x_i. The other features are the dense block, in order. Names: x0 .. x{F-1} (dense x0..x25 and
// sparse x26..x31 by default); labels label1, label2.
//
// Binary labels (binary_labels = true): label_k becomes 1 when label_k > t_k, else 0, where t_k
// is the median of label_k estimated from 100,001 draws of a calibration stream of `seed`;
// thresholds do not depend on num_samples or sample_stream, and about half the labels are
// positive. With the paper's tiny noise, binary label2 then nearly equals label1 when
// cos_theta > 0 and nearly equals its negation when cos_theta < 0; |cos_theta| matters mainly
// through the noise (raise noise_variance to make it matter more).
//
// Determinism: as for generate_mmoe, the same options give the same batch; samples come from
// stream `sample_stream` of `seed` (e.g. 0 training, 1 evaluation).
struct DrgradGeneratorOptions {
  std::int64_t num_samples = 20000;
  std::uint64_t seed = 1;
  std::uint64_t sample_stream = 0;
  double cos_theta = 0.5;                // in [-1, 1]
  std::int64_t num_features = 32;        // F, >= 1
  std::int64_t num_sparse = 6;           // in [0, F]
  std::int64_t sparse_vocabulary = 100;  // V, >= 1 (used when num_sparse > 0)
  double noise_mean = 0.01;
  double noise_variance = 0.002;  // >= 0
  bool binary_labels = true;
};

// Throws std::invalid_argument naming the option when an option is out of range.
GeneratedData generate_drgrad_synthetic(const DrgradGeneratorOptions& options);

}  // namespace drgrad::io
