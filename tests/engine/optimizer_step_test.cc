// engine::Optimizer on its multi-tensor path: one step gives the bits of the single-array kernel
// steps per parameter (dense and row-sparse), a parameter marked as already updated is left alone
// once, a gradient array that moves is picked up (the cached segment table is rebuilt), and
// embedding tables given at a capacity with their row counts in memory update only the counted
// rows, with the count read when the step runs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/core/random.h"
#include "engine/optim/optimizer.h"

using namespace drgrad;
using namespace drgrad::engine;

namespace {

std::vector<double> random_values(Random& random, std::size_t n, double low, double high) {
  std::vector<double> values(n);
  for (auto& v : values) v = random.uniform(low, high);
  return values;
}

// Two dense parameters of awkward sizes and one embedding table with two touched rows.
ParameterStore make_store(Random& random) {
  ParameterStore store(DType::kFloat64);
  store.add<double>("tower/a/layer0/weight", "tower/a", {3, 7}, random_values(random, 21, -1, 1));
  store.add<double>("tower/a/layer0/bias", "tower/a", {7}, random_values(random, 7, -1, 1));
  Parameter& table = store.add<double>("embeddings/slot", "embeddings", {5, 4},
                                       random_values(random, 20, -1, 1), /*row_sparse=*/true);
  table.touched_rows = {1, 3};
  table.touched_rows_device = Tensor::from_vector<std::int64_t>({2}, {1, 3});
  table.touched_row_count_device = Tensor::from_vector<std::int64_t>({1}, {2});
  table.gradient = Tensor::from_vector<double>({2, 4}, random_values(random, 8, -1, 1));
  return store;
}

void fill_dense_gradients(ParameterStore& store, Random& random) {
  for (const auto& p : store.all()) {
    if (p->row_sparse) continue;
    p->gradient.copy_from(Tensor::from_vector<double>(
        p->gradient.shape(),
        random_values(random, static_cast<std::size_t>(p->gradient.numel()), -2, 2)));
  }
}

// The reference: one single-array kernel step per parameter, as the optimizer did before.
void reference_step(const OptimizerSpec& spec, std::int64_t step, ParameterStore& store,
                    Optimizer<double>& state_holder) {
  const kernels::Context cpu = kernels::Context::cpu();
  for (const auto& pointer : store.all()) {
    Parameter& p = *pointer;
    auto [a, b] = state_holder.state_arrays(p);
    double* w = p.value.data<double>();
    const double* g = p.gradient.data<double>();
    kernels::RowSparseGradient<double> rows{
        p.touched_rows_device.defined() ? p.touched_rows_device.data<std::int64_t>() : nullptr, g,
        static_cast<std::int64_t>(p.touched_rows.size()), p.row_sparse ? p.value.dim(1) : 0};
    const std::int64_t table_rows = p.row_sparse ? p.value.dim(0) : 0;
    switch (spec.kind) {
      case OptimizerKind::kSgd: {
        const kernels::SgdOptions o{float(spec.learning_rate), float(spec.momentum),
                                    float(spec.weight_decay)};
        if (p.row_sparse) {
          kernels::sgd_update_rows<double>(cpu, o, w, table_rows, rows, a);
        } else {
          kernels::sgd_update<double>(cpu, o, w, g, a, p.value.numel());
        }
        break;
      }
      case OptimizerKind::kAdam: {
        const kernels::AdamOptions o{float(spec.learning_rate), float(spec.beta1),
                                     float(spec.beta2), float(spec.epsilon),
                                     float(spec.weight_decay)};
        if (p.row_sparse) {
          kernels::adam_update_rows<double>(cpu, o, step, w, table_rows, rows, a, b);
        } else {
          kernels::adam_update<double>(cpu, o, step, w, g, a, b, p.value.numel());
        }
        break;
      }
      case OptimizerKind::kAdagrad: {
        const kernels::AdagradOptions o{float(spec.learning_rate), float(spec.epsilon),
                                        float(spec.weight_decay)};
        if (p.row_sparse) {
          kernels::adagrad_update_rows<double>(cpu, o, w, table_rows, rows, a);
        } else {
          kernels::adagrad_update<double>(cpu, o, w, g, a, p.value.numel());
        }
        break;
      }
    }
  }
}

std::vector<std::vector<double>> weights_of(const ParameterStore& store) {
  std::vector<std::vector<double>> out;
  for (const auto& p : store.all()) out.push_back(p->value.to_vector<double>());
  return out;
}

}  // namespace

TEST_CASE("optimizer step gives the bits of one kernel step per parameter", "[optimizer]") {
  for (const OptimizerKind kind :
       {OptimizerKind::kSgd, OptimizerKind::kAdam, OptimizerKind::kAdagrad}) {
    INFO("optimizer " << static_cast<int>(kind));
    OptimizerSpec spec;
    spec.kind = kind;
    spec.learning_rate = 0.05;
    spec.weight_decay = 1e-3;
    Random random_a(4), random_b(4);
    ParameterStore fused = make_store(random_a);
    ParameterStore reference = make_store(random_b);
    Optimizer<double> fused_optimizer(spec, fused);
    Optimizer<double> reference_state(spec, reference);  // only holds the reference's state
    for (std::int64_t step = 1; step <= 3; ++step) {
      fill_dense_gradients(fused, random_a);
      fill_dense_gradients(reference, random_b);
      fused_optimizer.step(fused);
      reference_step(spec, step, reference, reference_state);
      CHECK(weights_of(fused) == weights_of(reference));
    }
    for (const auto& [name, tensor] : fused_optimizer.state()) {
      INFO(name);
      CHECK(tensor.to_vector<double>() == reference_state.state().at(name).to_vector<double>());
    }
  }
}

TEST_CASE("optimizer leaves a parameter marked as updated alone, once", "[optimizer]") {
  Random random(8);
  ParameterStore store = make_store(random);
  Optimizer<double> optimizer(OptimizerSpec{}, store);
  fill_dense_gradients(store, random);
  Parameter& bias = store.get("tower/a/layer0/bias");
  const auto before = bias.value.to_vector<double>();
  const auto rule = optimizer.next_dense_rule();
  CHECK(rule.kind == kernels::UpdateKind::kAdam);
  CHECK(rule.adam_correction.first == Approx(1 - 0.9));  // the corrections of step 1
  optimizer.skip_in_next_step(bias);
  optimizer.step(store);
  CHECK(bias.value.to_vector<double>() == before);
  CHECK(optimizer.steps_taken() == 1);
  optimizer.step(store);  // the mark is gone
  CHECK(bias.value.to_vector<double>() != before);
}

TEST_CASE("optimizer reads Adam's bias corrections from memory when told to", "[optimizer]") {
  // Two stores from the same draws: one optimizer takes the corrections by value, the other reads
  // them from the array that upload_step_scalars writes (as a CUDA graph's replays do).
  Random random_a(31), random_b(31);
  ParameterStore by_value = make_store(random_a);
  ParameterStore in_memory = make_store(random_b);
  Optimizer<double> value_optimizer(OptimizerSpec{}, by_value);
  Optimizer<double> memory_optimizer(OptimizerSpec{}, in_memory);
  memory_optimizer.keep_step_scalars_in_memory();
  CHECK(memory_optimizer.step_scalars_in_memory());
  CHECK(memory_optimizer.next_dense_rule().adam_correction_in_memory != nullptr);
  CHECK(value_optimizer.next_dense_rule().adam_correction_in_memory == nullptr);
  for (int step = 1; step <= 4; ++step) {
    fill_dense_gradients(by_value, random_a);
    fill_dense_gradients(in_memory, random_b);
    memory_optimizer.upload_step_scalars(memory_optimizer.steps_taken() + 1);
    value_optimizer.step(by_value);
    memory_optimizer.step(in_memory);
    CHECK(weights_of(in_memory) == weights_of(by_value));
  }
  // The array is what counts: the corrections of another step give another update.
  fill_dense_gradients(by_value, random_a);
  fill_dense_gradients(in_memory, random_b);
  memory_optimizer.upload_step_scalars(1);
  value_optimizer.step(by_value);
  memory_optimizer.step(in_memory);
  CHECK(weights_of(in_memory) != weights_of(by_value));
}

TEST_CASE("optimizer refuses to upload step scalars it does not keep", "[optimizer]") {
  Random random(5);
  ParameterStore store = make_store(random);
  Optimizer<double> optimizer(OptimizerSpec{}, store);
  CHECK_THROWS_AS(optimizer.upload_step_scalars(1), std::logic_error);
}

TEST_CASE("optimizer follows a gradient array that moved", "[optimizer]") {
  Random random(12);
  ParameterStore store = make_store(random);
  OptimizerSpec spec;
  spec.kind = OptimizerKind::kSgd;
  spec.momentum = 0;
  spec.learning_rate = 1;
  Optimizer<double> optimizer(spec, store);
  Parameter& bias = store.get("tower/a/layer0/bias");
  optimizer.step(store);  // builds the table with the current gradient arrays
  const auto before = bias.value.to_vector<double>();
  // A new gradient tensor (new storage) of ones: w -= 1 * 1.
  bias.gradient = Tensor::from_vector<double>({7}, std::vector<double>(7, 1.0));
  optimizer.step(store);
  const auto after = bias.value.to_vector<double>();
  for (std::size_t i = 0; i < before.size(); ++i) CHECK(after[i] == before[i] - 1.0);
}

TEST_CASE(
    "optimizer updates the first count rows of every table's capacity, the count read as it runs",
    "[optimizer]") {
  // Two tables whose touched rows are given as a device plan leaves them: room for more rows than
  // were touched, poison past the count (a row outside the table, NaN gradients), no host copy.
  const auto make_tables = [](Random& random) {
    ParameterStore store(DType::kFloat64);
    store.add<double>("embeddings/a", "embeddings", {6, 3}, random_values(random, 18, -1, 1), true);
    store.add<double>("embeddings/b", "embeddings", {4, 2}, random_values(random, 8, -1, 1), true);
    const double nan = std::nan("");
    Parameter& a = store.get("embeddings/a");
    a.touched_rows_device = Tensor::from_vector<std::int64_t>({5}, {4, 0, 2, 99, 99});
    a.touched_row_count_device = Tensor::from_vector<std::int64_t>({1}, {3});
    std::vector<double> a_gradient = random_values(random, 15, -1, 1);
    std::fill(a_gradient.begin() + 9, a_gradient.end(), nan);
    a.gradient = Tensor::from_vector<double>({5, 3}, a_gradient);
    Parameter& b = store.get("embeddings/b");
    b.touched_rows_device = Tensor::from_vector<std::int64_t>({4}, {3, 1, 0, 2});
    b.touched_row_count_device = Tensor::from_vector<std::int64_t>({1}, {4});
    b.gradient = Tensor::from_vector<double>({4, 2}, random_values(random, 8, -1, 1));
    return store;
  };
  for (const OptimizerKind kind :
       {OptimizerKind::kSgd, OptimizerKind::kAdam, OptimizerKind::kAdagrad}) {
    INFO("optimizer " << static_cast<int>(kind));
    OptimizerSpec spec;
    spec.kind = kind;
    spec.learning_rate = 0.05;
    spec.weight_decay = 1e-3;
    Random random_a(6), random_b(6);
    ParameterStore fused = make_tables(random_a);
    ParameterStore reference = make_tables(random_b);
    Optimizer<double> fused_optimizer(spec, fused);
    Optimizer<double> reference_state(spec, reference);
    for (std::int64_t step = 1; step <= 3; ++step) {
      // Step 2 touches one row of table a: the count changes in place, the arrays stay.
      const std::int64_t a_count = step == 2 ? 1 : 3;
      fused.get("embeddings/a").touched_row_count_device.data<std::int64_t>()[0] = a_count;
      for (const char* name : {"embeddings/a", "embeddings/b"}) {
        Parameter& p = reference.get(name);
        const std::int64_t count = std::string(name) == "embeddings/a" ? a_count : 4;
        auto rows = p.touched_rows_device.to_vector<std::int64_t>();
        p.touched_rows.assign(rows.begin(), rows.begin() + count);  // reference_step's count
      }
      fused_optimizer.step(fused);
      reference_step(spec, step, reference, reference_state);
      CHECK(weights_of(fused) == weights_of(reference));
    }
    for (const auto& [name, tensor] : fused_optimizer.state()) {
      INFO(name);
      CHECK(tensor.to_vector<double>() == reference_state.state().at(name).to_vector<double>());
    }
  }
}
