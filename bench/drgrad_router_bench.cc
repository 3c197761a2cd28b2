// The fused DRGrad router passes against the unfused path they replaced (dot per parameter and
// product, axpy per term, the norms again, one optimizer launch per parameter), on towers of a
// chosen shape: time per step, bytes each fused pass moves, and the rate against a copy of the
// same device (bytes read plus written) measured in the same run. Checks in the same run that
// both paths leave the same weights.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/bench_flags.h"
#include "bench/gpu_bench_support.h"
#include "kernels/core/memory.h"
#include "kernels/multitask/drgrad_router.h"
#include "kernels/optimizer/optimizer.h"
#include "kernels/vector/vector_ops.h"

#if defined(DRGRAD_WITH_CUDA)
#include <cuda_runtime.h>

#include "kernels/core/cuda_check.h"
#endif

namespace {

namespace kernels = drgrad::kernels;
namespace bench = drgrad::bench;

struct Options {
  std::string device = "cpu";
  std::int64_t input = 1024;                      // width of the towers' input
  std::vector<std::int64_t> units{1024, 512, 1};  // the towers' layers
  int num_aux = 1;
  std::string form = "paper";
  std::string rule = "adam";
  int warmup = 3;
  int repeats = 10;
  std::string json_path;
};

const char* kUsage =
    "usage: drgrad_router_bench [options]\n"
    "  --device cpu|cuda|cuda:N  (cpu; a missing device: SKIPPED, exit 0)\n"
    "  --input N                 width of the towers' input (cpu 1024, cuda 4096)\n"
    "  --units A,B,...           the towers' layers (cpu 1024,512,1; cuda 4096,1024,1)\n"
    "  --aux K                   auxiliary towers, 1..16 (1)\n"
    "  --form paper|paired|symmetric_heads   (paper)\n"
    "  --rule sgd|adam|adagrad   (adam)\n"
    "  --warmup N                untimed steps first (3)\n"
    "  --repeats N               timed steps; median (10)\n"
    "  --json FILE               append one JSON line per measurement\n";

Options parse_arguments(int argc, char** argv) {
  Options options;
  bench::parse_flags(argc, argv, kUsage, [&](const std::string& flag, const std::string& value) {
    if (flag == "--device") {
      options.device = value;
    } else if (flag == "--input") {
      options.input = std::stoll(value);
    } else if (flag == "--units") {
      options.units = bench::integer_list(value);
    } else if (flag == "--aux") {
      options.num_aux = std::stoi(value);
    } else if (flag == "--form") {
      options.form = value;
    } else if (flag == "--rule") {
      options.rule = value;
    } else if (flag == "--warmup") {
      options.warmup = std::stoi(value);
    } else if (flag == "--repeats") {
      options.repeats = std::stoi(value);
    } else if (flag == "--json") {
      options.json_path = value;
    } else {
      return false;
    }
    return true;
  });
  if (options.input < 0 || options.repeats <= 0 || options.warmup < 0 ||
      std::any_of(options.units.begin(), options.units.end(), [](auto u) { return u <= 0; })) {
    throw std::invalid_argument("--input, --units and --repeats must be positive\n" +
                                std::string(kUsage));
  }
  return options;
}

kernels::RouterRuleForm parse_form(const std::string& name) {
  if (name == "paper") return kernels::RouterRuleForm::kPaper;
  if (name == "paired") return kernels::RouterRuleForm::kPaired;
  if (name == "symmetric_heads") return kernels::RouterRuleForm::kSymmetricHeads;
  throw std::invalid_argument("--form: unknown router form '" + name + "'");
}

kernels::UpdateRule rule_of(const std::string& name, std::int64_t step) {
  if (name == "sgd") return kernels::sgd_rule({.learning_rate = 0.01f, .momentum = 0.9f});
  if (name == "adam") return kernels::adam_rule({.learning_rate = 1e-3f}, step);
  if (name == "adagrad") return kernels::adagrad_rule({.learning_rate = 0.01f});
  throw std::invalid_argument("--rule: unknown rule '" + name + "'");
}

// One array on the bench's device, released at scope exit.
class Array {
 public:
  Array(kernels::Device device, const std::vector<float>& host)
      : device_(device),
        size_(host.size()),
        data_(static_cast<float*>(kernels::allocate(device, host.size() * sizeof(float)))) {
    upload(host);
  }
  Array(const Array&) = delete;
  Array& operator=(const Array&) = delete;
  ~Array() {
    try {
      kernels::release(device_, data_);
    } catch (...) {  // a destructor must not throw; the error has been reported already
    }
  }
  float* data() const { return data_; }
  std::size_t size() const { return size_; }
  void upload(const std::vector<float>& host) {
    kernels::copy_bytes(device_, data_, kernels::Device::cpu(), host.data(),
                        host.size() * sizeof(float));
  }
  std::vector<float> download() const {
    std::vector<float> host(size_);
    kernels::copy_bytes(kernels::Device::cpu(), host.data(), device_, data_, size_ * sizeof(float));
    return host;
  }

 private:
  kernels::Device device_;
  std::size_t size_;
  float* data_;
};

// A tower: per parameter position, weights, gradients and two state arrays.
struct Tower {
  std::vector<std::unique_ptr<Array>> weights, gradients, state_a, state_b;
  kernels::RouterTowerArrays<float> arrays(std::size_t p) const {
    return {weights[p]->data(), gradients[p]->data(), state_a[p]->data(), state_b[p]->data()};
  }
};

Tower make_tower(kernels::Device device, const std::vector<std::int64_t>& sizes,
                 std::mt19937& random) {
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  auto values = [&](std::int64_t n, float scale, bool positive) {
    std::vector<float> out(static_cast<std::size_t>(n));
    for (float& v : out) v = scale * (positive ? std::abs(uniform(random)) : uniform(random));
    return out;
  };
  Tower tower;
  for (const std::int64_t n : sizes) {
    tower.weights.push_back(std::make_unique<Array>(device, values(n, 0.1f, false)));
    tower.gradients.push_back(std::make_unique<Array>(device, values(n, 0.01f, false)));
    tower.state_a.push_back(std::make_unique<Array>(device, values(n, 0.01f, true)));
    tower.state_b.push_back(std::make_unique<Array>(device, values(n, 1e-4f, true)));
  }
  return tower;
}

void synchronize(const kernels::Context& ctx) {
#if defined(DRGRAD_WITH_CUDA)
  if (ctx.device.is_cuda()) DRGRAD_CUDA_CHECK(cudaDeviceSynchronize());
#endif
}

// Seconds of each timed repetition of `work`, after `warmup` untimed ones, the device idle before
// each: on CUDA one event pair on the default stream around it, on the CPU the host clock.
template <typename Work>
std::vector<double> time_repeats(const kernels::Context& ctx, int warmup, int repeats,
                                 Work&& work) {
  for (int i = 0; i < warmup; ++i) work();
  synchronize(ctx);
  std::vector<double> seconds;
#if defined(DRGRAD_WITH_CUDA)
  if (ctx.device.is_cuda()) {
    cudaEvent_t start = nullptr, stop = nullptr;
    DRGRAD_CUDA_CHECK(cudaEventCreate(&start));
    DRGRAD_CUDA_CHECK(cudaEventCreate(&stop));
    for (int i = 0; i < repeats; ++i) {
      DRGRAD_CUDA_CHECK(cudaEventRecord(start));
      work();
      DRGRAD_CUDA_CHECK(cudaEventRecord(stop));
      DRGRAD_CUDA_CHECK(cudaEventSynchronize(stop));
      float milliseconds = 0;
      DRGRAD_CUDA_CHECK(cudaEventElapsedTime(&milliseconds, start, stop));
      seconds.push_back(1e-3 * milliseconds);
    }
    DRGRAD_CUDA_CHECK(cudaEventDestroy(start));
    DRGRAD_CUDA_CHECK(cudaEventDestroy(stop));
    return seconds;
  }
#endif
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    work();
    seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return seconds;
}

}  // namespace

int main(int argc, char** argv) {
  // Whole lines reach the log even when a timeout kills the run (stdout is a pipe or file there).
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    Options options = parse_arguments(argc, argv);
    const kernels::Device device = kernels::parse_device(options.device);
    if (options.input == 0) options.input = device.is_cuda() ? 4096 : 1024;
    if (options.units.empty()) {
      options.units = device.is_cuda() ? std::vector<std::int64_t>{4096, 1024, 1}
                                       : std::vector<std::int64_t>{1024, 512, 1};
    }
    if (bench::skip_without_device(device, "drgrad_router_bench")) return 0;
    const kernels::Context ctx{device, nullptr};
    const int K = options.num_aux;
    if (K < 1 || K > kernels::kRouterMaxAuxiliaryTowers) {
      throw std::invalid_argument("--aux must be in 1.." +
                                  std::to_string(kernels::kRouterMaxAuxiliaryTowers));
    }
    kernels::RouterRule rule;
    rule.form = parse_form(options.form);
    rule.num_aux = K;
    rule_of(options.rule, 1);  // checks the name

    std::vector<std::int64_t> sizes;  // weight and bias of each layer
    std::int64_t width = options.input, tower_elements = 0;
    for (const std::int64_t units : options.units) {
      sizes.push_back(width * units);
      sizes.push_back(units);
      tower_elements += width * units + units;
      width = units;
    }
    std::mt19937 random(7);
    Tower own = make_tower(device, sizes, random), shared = make_tower(device, sizes, random);
    std::vector<Tower> aux;
    for (int k = 0; k < K; ++k) aux.push_back(make_tower(device, sizes, random));

    std::vector<kernels::RouterProductSegment<float>> product_segments;
    std::vector<kernels::RouterApplySegment<float>> apply_segments;
    for (std::size_t p = 0; p < sizes.size(); ++p) {
      kernels::RouterApplySegment<float> apply;
      apply.own = own.arrays(p);
      apply.shared = shared.arrays(p);
      for (int k = 0; k < K; ++k) apply.aux[k] = aux[k].arrays(p);
      apply.n = sizes[p];
      apply.routed = 1;
      apply_segments.push_back(apply);
      kernels::RouterProductSegment<float> product;
      product.own = apply.own.gradients;
      product.shared = apply.shared.gradients;
      for (int k = 0; k < K; ++k) product.aux[k] = apply.aux[k].gradients;
      product.n = sizes[p];
      product_segments.push_back(product);
    }
    const auto product_table =
        kernels::make_router_product_table<float>(device, K, product_segments);
    const auto apply_table = kernels::make_router_apply_table<float>(device, K, apply_segments);
    kernels::RouterWorkspace workspace(device);

    // Every tower's gradients, to restore them before each unfused step (its axpy rewrites them).
    std::vector<Tower*> towers{&own, &shared};
    for (auto& tower : aux) towers.push_back(&tower);
    std::vector<std::vector<std::vector<float>>> original_gradients;
    for (const Tower* tower : towers) {
      std::vector<std::vector<float>> per_position;
      for (const auto& g : tower->gradients) per_position.push_back(g->download());
      original_gradients.push_back(per_position);
    }
    auto restore_gradients = [&] {
      for (std::size_t t = 0; t < towers.size(); ++t) {
        for (std::size_t p = 0; p < sizes.size(); ++p) {
          towers[t]->gradients[p]->upload(original_gradients[t][p]);
        }
      }
    };
    auto snapshot_weights = [&] {
      std::vector<std::vector<float>> out;
      for (const Tower* tower : towers) {
        for (const auto& w : tower->weights) out.push_back(w->download());
      }
      return out;
    };

    std::int64_t step = 0;
    auto fused_step = [&] {
      ++step;
      const kernels::UpdateRule update = rule_of(options.rule, step);
      kernels::router_products<float>(ctx, product_table, K, workspace);
      kernels::router_coefficients(ctx, rule, workspace);
      kernels::router_apply<float>(ctx, apply_table, K, &update, false, workspace);
      kernels::router_update_mixing(ctx, 1.0, workspace);
      double mu_own = 0, mu_shared = 0;
      workspace.read_mixing(&mu_own, &mu_shared);  // what the engine reads back each step
    };
    // The path DrgradStrategy took before the fused passes, on the same arrays (with its scratch:
    // ones for the entry sums, a copy of g1' for the symmetric form).
    const std::int64_t largest = *std::max_element(sizes.begin(), sizes.end());
    const Array ones(device, std::vector<float>(static_cast<std::size_t>(largest), 1.f));
    const Array own_copy(device, std::vector<float>(static_cast<std::size_t>(largest), 0.f));
    auto unfused_step = [&] {
      ++step;
      const kernels::UpdateRule update = rule_of(options.rule, step);
      const std::size_t P = sizes.size();
      auto dot = [&](const Array& a, const Array& b) {
        return kernels::dot<float>(ctx, static_cast<std::int64_t>(a.size()), a.data(), b.data());
      };
      double products[kernels::kRouterMaxProducts] = {};
      const bool symmetric = rule.form == kernels::RouterRuleForm::kSymmetricHeads;
      for (std::size_t p = 0; p < P; ++p) {
        if (symmetric) {  // entry sums, as dot products with ones
          products[kernels::kProductOwnSum] += dot(*own.gradients[p], ones);
          for (int k = 0; k < K; ++k) {
            products[kernels::product_aux_sum(k)] += dot(*aux[k].gradients[p], ones);
          }
        }
        products[kernels::kProductOwnNorm2] += dot(*own.gradients[p], *own.gradients[p]);
        products[kernels::kProductSharedNorm2] += dot(*shared.gradients[p], *shared.gradients[p]);
        products[kernels::kProductOwnDotShared] += dot(*own.gradients[p], *shared.gradients[p]);
        for (int k = 0; k < K; ++k) {
          products[kernels::product_aux_norm2(k)] +=
              dot(*aux[k].gradients[p], *aux[k].gradients[p]);
          products[kernels::product_own_dot_aux(k)] += dot(*own.gradients[p], *aux[k].gradients[p]);
        }
      }
      kernels::RouterCoefficientValues c;
      kernels::compute_router_coefficient_values(products, rule, &c);
      for (std::size_t p = 0; p < P; ++p) {
        const std::int64_t n = sizes[p];
        float* g_own = own.gradients[p]->data();
        if (symmetric) {  // the auxiliary heads read g1' before its own update
          kernels::copy_bytes(device, own_copy.data(), device, g_own, n * sizeof(float));
        }
        if (c.own_from_shared != 0) {
          kernels::axpy<float>(ctx, n, float(c.own_from_shared), shared.gradients[p]->data(),
                               g_own);
        }
        for (int k = 0; k < K; ++k) {
          if (c.own_from_aux[k] != 0) {
            kernels::axpy<float>(ctx, n, float(c.own_from_aux[k]), aux[k].gradients[p]->data(),
                                 g_own);
          }
        }
        if (c.shared_from_shared != 0) {
          float* g_shared = shared.gradients[p]->data();
          kernels::axpy<float>(ctx, n, float(c.shared_from_shared), g_shared, g_shared);
        }
        if (symmetric) {
          for (int k = 0; k < K; ++k) {
            kernels::axpy<float>(ctx, n, float(c.aux_from_own[k]), own_copy.data(),
                                 aux[k].gradients[p]->data());
          }
        }
      }
      double own_norm2 = 0, shared_norm2 = 0;
      for (std::size_t p = 0; p < P; ++p) {
        own_norm2 += dot(*own.gradients[p], *own.gradients[p]);
        shared_norm2 += dot(*shared.gradients[p], *shared.gradients[p]);
      }
      for (const Tower* tower : towers) {
        for (std::size_t p = 0; p < P; ++p) {
          const auto arrays = tower->arrays(p);
          switch (update.kind) {
            case kernels::UpdateKind::kSgd:
              kernels::sgd_update<float>(ctx, update.sgd, arrays.weights, arrays.gradients,
                                         arrays.state_a, sizes[p]);
              break;
            case kernels::UpdateKind::kAdam:
              kernels::adam_update<float>(ctx, update.adam, step, arrays.weights, arrays.gradients,
                                          arrays.state_a, arrays.state_b, sizes[p]);
              break;
            case kernels::UpdateKind::kAdagrad:
              kernels::adagrad_update<float>(ctx, update.adagrad, arrays.weights, arrays.gradients,
                                             arrays.state_a, sizes[p]);
              break;
          }
        }
      }
      static_cast<void>(own_norm2 + shared_norm2);
    };

    // Check: one step of each path from the same weights, state and gradients.
    const auto weights_before = snapshot_weights();
    std::vector<std::vector<std::vector<float>>> state_before;
    for (const Tower* tower : towers) {
      std::vector<std::vector<float>> per_position;
      for (std::size_t p = 0; p < sizes.size(); ++p) {
        per_position.push_back(tower->state_a[p]->download());
        per_position.push_back(tower->state_b[p]->download());
      }
      state_before.push_back(per_position);
    }
    auto restore_everything = [&] {
      restore_gradients();
      std::size_t i = 0;
      for (std::size_t t = 0; t < towers.size(); ++t) {
        for (std::size_t p = 0; p < sizes.size(); ++p) {
          towers[t]->weights[p]->upload(weights_before[i++]);
          towers[t]->state_a[p]->upload(state_before[t][2 * p]);
          towers[t]->state_b[p]->upload(state_before[t][2 * p + 1]);
        }
      }
    };
    step = 0;
    fused_step();
    const auto fused_weights = snapshot_weights();
    restore_everything();
    step = 0;
    unfused_step();
    const auto unfused_weights = snapshot_weights();
    restore_everything();
    double worst = 0;
    for (std::size_t i = 0; i < fused_weights.size(); ++i) {
      for (std::size_t j = 0; j < fused_weights[i].size(); ++j) {
        worst = std::max(worst, double(std::abs(fused_weights[i][j] - unfused_weights[i][j])));
      }
    }
    const bool check_passed = worst <= 1e-6;

    // Timings. The products pass and the apply pass alone, then whole steps of both paths.
    const std::int64_t towers_count = 2 + K;
    const int state_arrays = rule_of(options.rule, 1).state_count();
    const double product_bytes = double(towers_count) * tower_elements * 4;
    const double apply_bytes =
        double(towers_count) * tower_elements * (4 + 2 * 4 * (1 + state_arrays));
    const auto products_seconds = time_repeats(ctx, options.warmup, options.repeats, [&] {
      kernels::router_products<float>(ctx, product_table, K, workspace);
    });
    kernels::router_coefficients(ctx, rule, workspace);
    const kernels::UpdateRule update = rule_of(options.rule, 1);
    const auto apply_seconds = time_repeats(ctx, options.warmup, options.repeats, [&] {
      kernels::router_apply<float>(ctx, apply_table, K, &update, false, workspace);
    });
    const auto fused_seconds = time_repeats(ctx, options.warmup, options.repeats, fused_step);
    std::vector<double> unfused_seconds;
    for (int i = 0; i < options.warmup + options.repeats; ++i) {
      restore_gradients();
      const auto one = time_repeats(ctx, 0, 1, unfused_step);
      if (i >= options.warmup) unfused_seconds.push_back(one.front());
    }
    // The copy ceiling: as many bytes as the apply pass moves, read once and written once.
    const std::size_t copy_count = static_cast<std::size_t>(apply_bytes / 8);
    Array copy_source(device, std::vector<float>(copy_count, 1.f));
    Array copy_target(device, std::vector<float>(copy_count, 0.f));
    const auto copy_seconds = time_repeats(ctx, options.warmup, options.repeats, [&] {
      kernels::copy_bytes(device, copy_target.data(), device, copy_source.data(),
                          copy_count * sizeof(float));
    });
    const double copy_rate = 2.0 * copy_count * sizeof(float) / bench::median(copy_seconds);

    std::printf("# drgrad_router_bench, %s\n", bench::utc_now().c_str());
    std::printf("# device: %s; build: %s\n", device.to_string().c_str(),
                bench::build_flags().c_str());
    std::printf("# towers: input %lld, units", static_cast<long long>(options.input));
    for (const auto u : options.units) std::printf(" %lld", static_cast<long long>(u));
    std::printf(" (%lld elements each), 2 + %d towers, form %s, rule %s\n",
                static_cast<long long>(tower_elements), K, options.form.c_str(),
                options.rule.c_str());
    std::printf("# check: fused and unfused weights after one step differ by at most %.3g (%s)\n",
                worst, check_passed ? "ok" : "FAILED");
    std::printf("# copy ceiling: %.2f GB/s (read + written, %.1f MB)\n", copy_rate * 1e-9,
                2.0 * copy_count * sizeof(float) * 1e-6);
    std::printf("%-22s %12s %12s %10s\n", "measurement", "median_ms", "GB/s", "of_copy");
    bench::JsonLines json(options.json_path);
    auto report = [&](const char* name, const std::vector<double>& seconds, double bytes) {
      const double median = bench::median(seconds);
      const double rate = bytes > 0 ? bytes / median : 0;
      std::printf("%-22s %12.4f %12.2f %10s\n", name, median * 1e3, rate * 1e-9,
                  bytes > 0
                      ? (std::to_string(int(std::lround(100 * rate / copy_rate))) + "%").c_str()
                      : "-");
      std::ostringstream fields;
      fields << "\"benchmark\": \"drgrad_router\", \"name\": " << bench::json_string(name)
             << ", \"device\": " << bench::json_string(device.to_string())
             << ", \"tower_elements\": " << tower_elements << ", \"aux\": " << K
             << ", \"form\": " << bench::json_string(options.form)
             << ", \"rule\": " << bench::json_string(options.rule)
             << ", \"median_seconds\": " << median << ", \"bytes\": " << bytes
             << ", \"copy_bytes_per_second\": " << copy_rate
             << ", \"check_passed\": " << (check_passed ? "true" : "false");
      json.write(fields.str());
    };
    report("products_pass", products_seconds, product_bytes);
    report("apply_pass", apply_seconds, apply_bytes);
    report("fused_step", fused_seconds, product_bytes + apply_bytes);
    report("unfused_step", unfused_seconds, 0);
    if (!check_passed) {
      std::fprintf(stderr, "drgrad_router_bench: the fused and unfused paths disagree (%.3g)\n",
                   worst);
      return 1;
    }
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "drgrad_router_bench: %s\n", error.what());
    return 1;
  }
}
