// CPU twin of the fused dense layer: every epilogue's forward and backward against a naive
// reference written from the definitions, stacked upstreams, accumulation, finite differences of
// the mish derivative and of the whole layer in double, stability at large |z|, argument checks.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/dense/dense_layer.h"
#include "kernels/dense/dense_math.h"

namespace {

namespace kernels = drgrad::kernels;
using kernels::DenseEpilogue;
using kernels::DenseShape;

constexpr DenseEpilogue kEpilogues[] = {DenseEpilogue::kNone, DenseEpilogue::kBias,
                                        DenseEpilogue::kBiasRelu, DenseEpilogue::kBiasMish,
                                        DenseEpilogue::kBiasSigmoid};

template <typename T>
std::vector<T> uniform(std::mt19937& random, std::size_t n, double low, double high) {
  std::uniform_real_distribution<double> distribution(low, high);
  std::vector<T> values(n);
  for (T& value : values) value = static_cast<T>(distribution(random));
  return values;
}

// The activations written directly from their definitions, in long double.
long double naive_activation(DenseEpilogue epilogue, long double z) {
  switch (epilogue) {
    case DenseEpilogue::kNone:
    case DenseEpilogue::kBias:
      return z;
    case DenseEpilogue::kBiasRelu:
      return z > 0 ? z : 0;
    case DenseEpilogue::kBiasMish:
      return z * std::tanh(std::log(1 + std::exp(z)));
    case DenseEpilogue::kBiasSigmoid:
      return 1 / (1 + std::exp(-z));
  }
  return z;
}
// Derivatives from the definitions: mish' by the product and chain rules.
long double naive_derivative(DenseEpilogue epilogue, long double z) {
  switch (epilogue) {
    case DenseEpilogue::kNone:
    case DenseEpilogue::kBias:
      return 1;
    case DenseEpilogue::kBiasRelu:
      return z > 0 ? 1 : 0;
    case DenseEpilogue::kBiasMish: {
      const long double softplus = std::log(1 + std::exp(z));
      const long double t = std::tanh(softplus);
      const long double d_softplus = std::exp(z) / (1 + std::exp(z));
      return t + z * (1 - t * t) * d_softplus;
    }
    case DenseEpilogue::kBiasSigmoid: {
      const long double s = 1 / (1 + std::exp(-z));
      return s * (1 - s);
    }
  }
  return 1;
}

// The pre-activation z[b, o] = sum_i x[b, i] w[i, o] (+ bias[o]), in long double.
template <typename T>
std::vector<long double> naive_pre_activation(const DenseShape& s, DenseEpilogue epilogue,
                                              const std::vector<T>& x, const std::vector<T>& w,
                                              const std::vector<T>& bias) {
  std::vector<long double> z(s.batch * s.out);
  for (std::int64_t b = 0; b < s.batch; ++b) {
    for (std::int64_t o = 0; o < s.out; ++o) {
      long double sum = kernels::has_bias(epilogue) ? bias[o] : 0;
      for (std::int64_t i = 0; i < s.in; ++i)
        sum += (long double)x[b * s.in + i] * w[i * s.out + o];
      z[b * s.out + o] = sum;
    }
  }
  return z;
}

template <typename T>
void check_close(const std::vector<T>& got, const std::vector<long double>& expected,
                 double tolerance, const std::string& what) {
  REQUIRE(got.size() == expected.size());
  std::size_t mismatches = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const long double difference = std::fabs((long double)got[i] - expected[i]);
    if (!(difference <= tolerance * (1 + std::fabs(expected[i])))) ++mismatches;
  }
  INFO(what << ": " << mismatches << " of " << got.size() << " outside " << tolerance);
  CHECK(mismatches == 0);
}

template <typename T>
struct DenseCase {
  DenseShape shape;
  DenseEpilogue epilogue;
  std::vector<T> x, w, bias, y, z;

  DenseCase(std::mt19937& random, DenseShape s, DenseEpilogue e)
      : shape(s),
        epilogue(e),
        x(uniform<T>(random, s.batch * s.in, -1.5, 1.5)),
        w(uniform<T>(random, s.in * s.out, -1.0, 1.0)),
        bias(uniform<T>(random, s.out, -0.5, 0.5)),
        y(s.batch * s.out, std::numeric_limits<T>::quiet_NaN()),
        z(s.batch * s.out, std::numeric_limits<T>::quiet_NaN()) {}

  void forward() {
    kernels::dense_forward<T>(kernels::Context::cpu(), shape, epilogue, x.data(), w.data(),
                              kernels::has_bias(epilogue) ? bias.data() : nullptr, y.data(),
                              kernels::needs_pre_activation(epilogue) ? z.data() : nullptr);
  }
};

template <typename T>
void check_forward_against_reference(double tolerance) {
  std::mt19937 random(7);
  for (const DenseShape shape :
       {DenseShape{1, 1, 1}, DenseShape{5, 7, 3}, DenseShape{33, 17, 29}}) {
    for (DenseEpilogue epilogue : kEpilogues) {
      DenseCase<T> c(random, shape, epilogue);
      c.forward();
      const auto z = naive_pre_activation(shape, epilogue, c.x, c.w, c.bias);
      std::vector<long double> y(z.size());
      for (std::size_t i = 0; i < z.size(); ++i) y[i] = naive_activation(epilogue, z[i]);
      const std::string what = std::string(kernels::dense_epilogue_name(epilogue)) + " batch " +
                               std::to_string(shape.batch);
      check_close(c.y, y, tolerance, what + " y");
      if (kernels::needs_pre_activation(epilogue)) check_close(c.z, z, tolerance, what + " z");
    }
  }
}

// The backward of `tasks` upstreams against the reference, accumulating onto start values.
template <typename T>
void check_backward_against_reference(std::int64_t tasks, bool accumulate, double tolerance) {
  std::mt19937 random(11 + tasks);
  for (const DenseShape shape :
       {DenseShape{1, 2, 3}, DenseShape{9, 7, 5}, DenseShape{40, 13, 21}}) {
    for (DenseEpilogue epilogue : kEpilogues) {
      DenseCase<T> c(random, shape, epilogue);
      c.forward();
      const std::int64_t block = shape.batch * shape.out;
      const auto dy = uniform<T>(random, tasks * block, -1.0, 1.0);
      std::vector<T> d_pre(tasks * block, std::numeric_limits<T>::quiet_NaN());
      std::vector<T> dx(tasks * shape.batch * shape.in, std::numeric_limits<T>::quiet_NaN());
      const auto d_weight_start = uniform<T>(random, tasks * shape.in * shape.out, -1.0, 1.0);
      const auto d_bias_start = uniform<T>(random, tasks * shape.out, -1.0, 1.0);
      std::vector<T> d_weight = d_weight_start, d_bias = d_bias_start;
      kernels::dense_backward<T>(kernels::Context::cpu(), shape, epilogue, tasks, c.x.data(),
                                 c.w.data(), c.y.data(), c.z.data(), dy.data(), d_pre.data(),
                                 dx.data(), d_weight.data(), d_bias.data(), accumulate);

      const auto z = naive_pre_activation(shape, epilogue, c.x, c.w, c.bias);
      std::vector<long double> dz(tasks * block), expected_dx(dx.size()),
          expected_dw(d_weight.size()), expected_db(d_bias.size());
      for (std::int64_t k = 0; k < tasks; ++k) {
        for (std::int64_t i = 0; i < block; ++i) {
          dz[k * block + i] = dy[k * block + i] * naive_derivative(epilogue, z[i]);
        }
        for (std::int64_t o = 0; o < shape.out; ++o) {
          long double sum = accumulate ? d_bias_start[k * shape.out + o] : 0;
          for (std::int64_t b = 0; b < shape.batch; ++b) sum += dz[k * block + b * shape.out + o];
          expected_db[k * shape.out + o] = sum;
        }
        for (std::int64_t i = 0; i < shape.in; ++i) {
          for (std::int64_t o = 0; o < shape.out; ++o) {
            const std::int64_t at = (k * shape.in + i) * shape.out + o;
            long double sum = accumulate ? d_weight_start[at] : 0;
            for (std::int64_t b = 0; b < shape.batch; ++b) {
              sum += (long double)c.x[b * shape.in + i] * dz[k * block + b * shape.out + o];
            }
            expected_dw[at] = sum;
          }
        }
        for (std::int64_t b = 0; b < shape.batch; ++b) {
          for (std::int64_t i = 0; i < shape.in; ++i) {
            long double sum = 0;
            for (std::int64_t o = 0; o < shape.out; ++o) {
              sum += dz[k * block + b * shape.out + o] * c.w[i * shape.out + o];
            }
            expected_dx[(k * shape.batch + b) * shape.in + i] = sum;
          }
        }
      }
      const std::string what = std::string(kernels::dense_epilogue_name(epilogue)) + " tasks " +
                               std::to_string(tasks) + " batch " + std::to_string(shape.batch) +
                               (accumulate ? " accumulate" : " overwrite");
      check_close(dx, expected_dx, tolerance, what + " dx");
      check_close(d_weight, expected_dw, tolerance, what + " d_weight");
      if (kernels::has_bias(epilogue)) {
        check_close(d_bias, expected_db, tolerance, what + " d_bias");
      } else {
        CHECK(d_bias == d_bias_start);  // kNone has no bias: untouched
      }
      if (kernels::needs_pre_activation_gradient(epilogue)) {
        check_close(d_pre, dz, tolerance, what + " d_pre");
      } else {
        CHECK(std::isnan(d_pre[0]));  // dz is dy itself: d_pre is not written
      }
    }
  }
}

}  // namespace

TEST_CASE("dense forward matches the definition for every epilogue", "[dense]") {
  check_forward_against_reference<double>(1e-12);
  check_forward_against_reference<float>(2e-6);
}

TEST_CASE("dense backward matches the definition, one and several upstreams", "[dense]") {
  for (bool accumulate : {false, true}) {
    check_backward_against_reference<double>(1, accumulate, 1e-12);
    check_backward_against_reference<double>(3, accumulate, 1e-12);
    check_backward_against_reference<float>(1, accumulate, 1e-5);
    check_backward_against_reference<float>(4, accumulate, 1e-5);
  }
}

TEST_CASE("mish derivative matches central differences over a wide range", "[dense][mish]") {
  namespace math = kernels::dense_math;
  for (double z = -40.0; z <= 40.0; z += 0.37) {
    const double h = 1e-6 * std::max(1.0, std::fabs(z));
    const double numeric = (math::mish(z + h) - math::mish(z - h)) / (2 * h);
    INFO("z = " << z);
    CHECK(math::mish_derivative(z) == Approx(numeric).margin(1e-8).epsilon(1e-6));
  }
}

TEST_CASE("mish and its derivative stay finite and take their limits at large |z|",
          "[dense][mish]") {
  namespace math = kernels::dense_math;
  for (float z : {-1e30f, -1e4f, -100.f, 100.f, 1e4f, 1e30f}) {
    INFO("z = " << z);
    CHECK(std::isfinite(math::mish(z)));
    CHECK(std::isfinite(math::mish_derivative(z)));
  }
  CHECK(math::mish(1e4f) == 1e4f);
  CHECK(math::mish_derivative(1e4f) == 1.f);
  CHECK(math::mish(-1e4f) == 0.f);  // -1e4 * e^-1e4 underflows to -0
  CHECK(math::mish_derivative(-1e4f) == 0.f);
  CHECK(math::mish_derivative(-100.0) == Approx(0.0).margin(1e-40));
  CHECK(math::mish_derivative(0.0) == Approx(std::tanh(std::log(2.0))).epsilon(1e-15));
}

TEST_CASE("dense backward matches finite differences of the layer in double", "[dense]") {
  // L = sum(u * y(x, W, b)) for a fixed u: its gradients are the backward with dy = u.
  std::mt19937 random(3);
  const DenseShape shape{4, 5, 3};
  for (DenseEpilogue epilogue : kEpilogues) {
    DenseCase<double> c(random, shape, epilogue);
    const auto u = uniform<double>(random, shape.batch * shape.out, -1.0, 1.0);
    auto loss = [&]() {
      c.forward();
      double sum = 0;
      for (std::size_t i = 0; i < u.size(); ++i) sum += u[i] * c.y[i];
      return sum;
    };
    loss();
    std::vector<double> d_pre(u.size()), dx(c.x.size()), dw(c.w.size(), 0.0), db(c.bias.size());
    kernels::dense_backward<double>(kernels::Context::cpu(), shape, epilogue, 1, c.x.data(),
                                    c.w.data(), c.y.data(), c.z.data(), u.data(), d_pre.data(),
                                    dx.data(), dw.data(), db.data(), false);
    auto numeric = [&](std::vector<double>& values, std::size_t i) {
      const double saved = values[i], h = 1e-6;
      values[i] = saved + h;
      const double up = loss();
      values[i] = saved - h;
      const double down = loss();
      values[i] = saved;
      return (up - down) / (2 * h);
    };
    INFO(kernels::dense_epilogue_name(epilogue));
    for (std::size_t i = 0; i < c.x.size(); ++i)
      CHECK(dx[i] == Approx(numeric(c.x, i)).margin(1e-7));
    for (std::size_t i = 0; i < c.w.size(); ++i)
      CHECK(dw[i] == Approx(numeric(c.w, i)).margin(1e-7));
    if (kernels::has_bias(epilogue)) {
      for (std::size_t i = 0; i < c.bias.size(); ++i) {
        CHECK(db[i] == Approx(numeric(c.bias, i)).margin(1e-7));
      }
    }
  }
}

TEST_CASE("dense backward lets d_pre alias dy", "[dense]") {
  std::mt19937 random(5);
  const DenseShape shape{6, 4, 5};
  DenseCase<float> c(random, shape, DenseEpilogue::kBiasMish);
  c.forward();
  const auto dy = uniform<float>(random, shape.batch * shape.out, -1.0, 1.0);
  std::vector<float> separate(dy.size()), dx(shape.batch * shape.in), dw(shape.in * shape.out),
      db(shape.out);
  kernels::cpu::dense_backward<float>(shape, DenseEpilogue::kBiasMish, 1, c.x.data(), c.w.data(),
                                      c.y.data(), c.z.data(), dy.data(), separate.data(), dx.data(),
                                      dw.data(), db.data(), false);
  std::vector<float> in_place = dy, dx2(dx.size()), dw2(dw.size()), db2(db.size());
  kernels::cpu::dense_backward<float>(shape, DenseEpilogue::kBiasMish, 1, c.x.data(), c.w.data(),
                                      c.y.data(), c.z.data(), in_place.data(), in_place.data(),
                                      dx2.data(), dw2.data(), db2.data(), false);
  CHECK(in_place == separate);
  CHECK(dx2 == dx);
  CHECK(dw2 == dw);
  CHECK(db2 == db);
}

TEST_CASE("dense products on the CPU are fp32 whatever the matmul precision", "[dense]") {
  std::mt19937 random(9);
  const DenseShape shape{7, 9, 4};
  DenseCase<float> c(random, shape, DenseEpilogue::kBiasRelu);
  c.forward();
  for (auto precision : {kernels::MatmulPrecision::kTf32, kernels::MatmulPrecision::kBf16}) {
    kernels::Context ctx = kernels::Context::cpu();
    ctx.matmul_precision = precision;
    std::vector<float> y(c.y.size());
    kernels::dense_forward<float>(ctx, shape, DenseEpilogue::kBiasRelu, c.x.data(), c.w.data(),
                                  c.bias.data(), y.data(), nullptr);
    CHECK(y == c.y);
  }
}

TEST_CASE("dense op refuses missing buffers and bad sizes with a message", "[dense]") {
  const DenseShape shape{2, 3, 4};
  std::vector<float> x(6), w(12), bias(4), y(8), z(8), dy(8), dw(12), db(4);
  const auto cpu = kernels::Context::cpu();
  CHECK_THROWS_WITH(kernels::dense_forward<float>(cpu, shape, DenseEpilogue::kBiasMish, x.data(),
                                                  w.data(), bias.data(), y.data(), nullptr),
                    Catch::Contains("pre-activation"));
  CHECK_THROWS_WITH(kernels::dense_forward<float>(cpu, shape, DenseEpilogue::kBiasMish, x.data(),
                                                  w.data(), bias.data(), y.data(), y.data()),
                    Catch::Contains("apart from y"));
  CHECK_THROWS_WITH(kernels::dense_forward<float>(cpu, shape, DenseEpilogue::kBias, x.data(),
                                                  w.data(), nullptr, y.data(), nullptr),
                    Catch::Contains("needs a bias"));
  CHECK_THROWS_AS(kernels::dense_forward<float>(cpu, DenseShape{2, 0, 4}, DenseEpilogue::kNone,
                                                x.data(), w.data(), nullptr, y.data(), nullptr),
                  std::invalid_argument);
  CHECK_THROWS_WITH(kernels::dense_backward<float>(cpu, shape, DenseEpilogue::kBiasRelu, 1,
                                                   x.data(), w.data(), y.data(), nullptr, dy.data(),
                                                   nullptr, nullptr, dw.data(), db.data(), false),
                    Catch::Contains("d_pre"));
  CHECK_THROWS_WITH(kernels::dense_backward<float>(cpu, shape, DenseEpilogue::kBias, 0, x.data(),
                                                   w.data(), y.data(), nullptr, dy.data(), nullptr,
                                                   nullptr, dw.data(), db.data(), false),
                    Catch::Contains("tasks"));
}

TEST_CASE("dense epilogue names and mapping from activations", "[dense]") {
  using kernels::Activation;
  for (Activation f :
       {Activation::kIdentity, Activation::kRelu, Activation::kMish, Activation::kSigmoid}) {
    CHECK(kernels::activation_of(kernels::dense_epilogue_with_bias(f)) == f);
    CHECK(kernels::has_bias(kernels::dense_epilogue_with_bias(f)));
  }
  CHECK(std::string(kernels::dense_epilogue_name(DenseEpilogue::kBiasMish)) == "bias+mish");
  CHECK(kernels::parse_matmul_precision("bf16") == kernels::MatmulPrecision::kBf16);
  CHECK(std::string(kernels::matmul_precision_name(kernels::MatmulPrecision::kTf32)) == "tf32");
  CHECK_THROWS_WITH(kernels::parse_matmul_precision("fp16"), Catch::Contains("fp32"));
}

TEST_CASE("dense backward into a relu producer equals the two backwards one after the other",
          "[dense]") {
  std::mt19937 random(13);
  // Producer P: bias+relu [batch, 6] -> [batch, in]; this layer [in] -> [out].
  const DenseShape shape{11, 9, 4};
  const DenseShape producer_shape{shape.batch, 6, shape.in};
  for (DenseEpilogue epilogue : kEpilogues) {
    DenseCase<double> producer(random, producer_shape, DenseEpilogue::kBiasRelu);
    kernels::ReluMask mask{nullptr, true};
    kernels::dense_forward<double>(kernels::Context::cpu(), producer_shape,
                                   DenseEpilogue::kBiasRelu, producer.x.data(), producer.w.data(),
                                   producer.bias.data(), producer.y.data(), nullptr, &mask);
    CHECK_FALSE(mask.written);  // the CPU twin keeps no mask
    DenseCase<double> layer(random, shape, epilogue);
    layer.x = producer.y;
    layer.forward();
    const auto dy = uniform<double>(random, shape.batch * shape.out, -1.0, 1.0);
    const auto producer_db_start = uniform<double>(random, shape.in, -1.0, 1.0);

    // Reference: this layer's backward with dx, then P's relu backward and bias gradient.
    std::vector<double> d_pre(dy.size()), dx(shape.batch * shape.in), dw(shape.in * shape.out),
        db(shape.out);
    kernels::dense_backward<double>(kernels::Context::cpu(), shape, epilogue, 1, layer.x.data(),
                                    layer.w.data(), layer.y.data(), layer.z.data(), dy.data(),
                                    d_pre.data(), dx.data(), dw.data(), db.data(), false);
    std::vector<double> expected_producer_d_pre(dx.size()), expected_producer_db(shape.in);
    for (std::size_t i = 0; i < dx.size(); ++i) {
      expected_producer_d_pre[i] = layer.x[i] > 0 ? dx[i] : 0.0;
    }
    for (std::int64_t c = 0; c < shape.in; ++c) {
      expected_producer_db[c] = producer_db_start[c];
      for (std::int64_t r = 0; r < shape.batch; ++r) {
        expected_producer_db[c] += expected_producer_d_pre[r * shape.in + c];
      }
    }

    // Accumulating onto zeros for this layer, onto start values for the producer's bias.
    std::vector<double> d_pre2(dy.size()), dw2(dw.size()), db2(db.size()),
        producer_d_pre(dx.size()), producer_db = producer_db_start;
    kernels::dense_backward_into_relu_producer<double>(
        kernels::Context::cpu(), shape, epilogue, layer.x.data(), layer.w.data(), layer.y.data(),
        layer.z.data(), dy.data(), d_pre2.data(), dw2.data(), db2.data(), true, nullptr,
        producer_d_pre.data(), producer_db.data());
    INFO(kernels::dense_epilogue_name(epilogue));
    CHECK(dw2 == dw);
    if (kernels::has_bias(epilogue)) CHECK(db2 == db);
    CHECK(producer_d_pre == expected_producer_d_pre);
    for (std::int64_t c = 0; c < shape.in; ++c) {
      CHECK(producer_db[c] == Approx(expected_producer_db[c]).epsilon(1e-14));
    }
  }
  CHECK_FALSE(kernels::dense_relu_mask_possible(kernels::Context::cpu()));
  CHECK(kernels::dense_relu_mask_bytes(DenseShape{3, 5, 1}) == 3 * 16);
  CHECK(kernels::dense_relu_mask_bytes(DenseShape{2, 5, 129}) == 2 * 32);
  std::vector<float> x(4), w(4), y(4), dy(4), dw(4), db(2);
  CHECK_THROWS_WITH(kernels::dense_backward_into_relu_producer<float>(
                        kernels::Context::cpu(), DenseShape{2, 2, 2}, DenseEpilogue::kBias,
                        x.data(), w.data(), y.data(), nullptr, dy.data(), nullptr, dw.data(),
                        db.data(), false, nullptr, nullptr, nullptr),
                    Catch::Contains("producer"));
}
