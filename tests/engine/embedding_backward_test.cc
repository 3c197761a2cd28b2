// model.embedding_backward in the engine: training on the CPU with the host plan, the device plan
// (its CPU twin here) and the atomic backward ends with the same parameters; the config key
// parses, round-trips and reaches every slot.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "engine/config/config.h"
#include "engine/layers/embedding.h"
#include "engine/multitask/drgrad_strategy.h"
#include "engine/multitask/surgery_strategy.h"
#include "engine/train/trainer.h"
#include "io/generators/mmoe_generator.h"
#include "tests/support/gradient_check.h"

using namespace drgrad;
using namespace drgrad::engine;
using namespace drgrad::testing;

namespace {

struct Scenario {
  io::GeneratedData train, eval;
  ModelSpec model;
  OptimizerSpec optimizer;
  TrainingOptions options;

  Scenario(std::int64_t vocabulary, kernels::Pooling pooling) {
    io::MmoeGeneratorOptions data;
    data.num_samples = 200;
    data.input_dim = 6;
    data.sparse_slots = 3;
    data.sparse_vocabulary = vocabulary;
    train = io::generate_mmoe(data);
    data.num_samples = 50;
    data.sample_stream = 1;
    eval = io::generate_mmoe(data);
    model.num_dense = 6;
    for (const auto& slot : train.schema.sparse_slots) {
      model.slots.push_back({slot.name, slot.vocabulary_size, 4, pooling, OutOfRange::kError});
    }
    model.tasks = {{"y1", 0, TaskType::kBinary, 1.0, 2.0}, {"y2", 1, TaskType::kBinary, 0.5, 1.0}};
    model.backbone = BackboneKind::kMmoe;
    model.num_experts = 2;
    model.expert_units = {8};
    model.tower_units = {4};
    optimizer.learning_rate = 0.02;
    options.batch_size = 16;
    options.epochs = 2;
    options.show_progress = false;
    options.save_checkpoints = false;
  }

  // Trains with `backward` on every slot (and DRGrad's stacked per-task backward when asked);
  // returns every parameter's values (the initial ones when `fit` is false).
  std::vector<std::vector<float>> train_with(EmbeddingBackward backward, bool drgrad,
                                             bool fit = true) const {
    ModelSpec spec = model;
    for (auto& slot : spec.slots) slot.backward = backward;
    if (drgrad) spec.split.enabled = true;
    Trainer trainer(spec, optimizer, options,
                    std::make_unique<InMemoryBatchStream>(train.schema, train.batch,
                                                          options.batch_size, true, 3),
                    std::make_unique<InMemoryBatchStream>(eval.schema, eval.batch, 64, false, 3));
    if (drgrad) {
      DrgradSettings settings;
      trainer.set_strategy(std::make_unique<DrgradStrategy>(settings, trainer.model()));
    }
    if (fit) trainer.fit();
    return values_of(trainer);
  }

  // Trains with `backward` on every slot and PCGrad or CAGrad over the backbone and the
  // embedding tables (whose per-task gradients then hold capacity rows, zero past the count).
  std::vector<std::vector<float>> train_with_surgery(EmbeddingBackward backward,
                                                     SurgeryMethod method) const {
    ModelSpec spec = model;
    for (auto& slot : spec.slots) slot.backward = backward;
    Trainer trainer(spec, optimizer, options,
                    std::make_unique<InMemoryBatchStream>(train.schema, train.batch,
                                                          options.batch_size, true, 3),
                    std::make_unique<InMemoryBatchStream>(eval.schema, eval.batch, 64, false, 3));
    GradientSurgeryOptions surgery;
    surgery.method = method;
    trainer.set_strategy(std::make_unique<SurgeryStrategy>(trainer.model().context(), surgery));
    trainer.fit();
    return values_of(trainer);
  }

  static std::vector<std::vector<float>> values_of(Trainer& trainer) {
    std::vector<std::vector<float>> values;
    for (const auto& parameter : trainer.model().parameters().all()) {
      values.push_back(parameter->value.to_vector<float>());
    }
    return values;
  }
};

bool within_tolerance(const std::vector<std::vector<float>>& a,
                      const std::vector<std::vector<float>>& b, double relative) {
  if (a.size() != b.size()) return false;
  for (std::size_t p = 0; p < a.size(); ++p) {
    if (a[p].size() != b[p].size()) return false;
    for (std::size_t i = 0; i < a[p].size(); ++i) {
      if (!(std::abs(a[p][i] - b[p][i]) <= relative * (1.0 + std::abs(b[p][i])))) return false;
    }
  }
  return true;
}

}  // namespace

TEST_CASE("every embedding backward trains to the same parameters on the CPU",
          "[embedding][trainer]") {
  // A small vocabulary (rows recur, counting-sort plans) and a large one (merge-sort plans);
  // sum and mean pooling; the plain step and DRGrad's per-task (stacked) backward.
  for (const std::int64_t vocabulary : {15, 5000}) {
    for (const auto pooling : {kernels::Pooling::kSum, kernels::Pooling::kMean}) {
      for (const bool drgrad : {false, true}) {
        INFO("vocabulary " << vocabulary << (pooling == kernels::Pooling::kSum ? " sum" : " mean")
                           << (drgrad ? ", drgrad" : ", plain step"));
        const Scenario scenario(vocabulary, pooling);
        const auto host = scenario.train_with(EmbeddingBackward::kHostPlan, drgrad);
        const auto device = scenario.train_with(EmbeddingBackward::kDevicePlan, drgrad);
        const auto atomic = scenario.train_with(EmbeddingBackward::kFastNondeterministic, drgrad);
        CHECK(device == host);
        CHECK(within_tolerance(atomic, host, 1e-5));
        // Training moved the parameters: the comparison is not between untouched tables.
        CHECK(host != scenario.train_with(EmbeddingBackward::kHostPlan, drgrad, false));
      }
    }
  }
}

TEST_CASE(
    "gradient surgery over the embedding tables trains to the same parameters with every "
    "backward on the CPU",
    "[embedding][trainer][surgery]") {
  for (const std::int64_t vocabulary : {15, 5000}) {
    for (const SurgeryMethod method : {SurgeryMethod::kPcgrad, SurgeryMethod::kCagrad}) {
      INFO("vocabulary " << vocabulary
                         << (method == SurgeryMethod::kPcgrad ? ", pcgrad" : ", cagrad"));
      const Scenario scenario(vocabulary, kernels::Pooling::kSum);
      const auto host = scenario.train_with_surgery(EmbeddingBackward::kHostPlan, method);
      const auto device = scenario.train_with_surgery(EmbeddingBackward::kDevicePlan, method);
      const auto atomic =
          scenario.train_with_surgery(EmbeddingBackward::kFastNondeterministic, method);
      CHECK(device == host);
      CHECK(within_tolerance(atomic, host, 1e-5));
      CHECK(host != scenario.train_with(EmbeddingBackward::kHostPlan, false, false));
    }
  }
}

TEST_CASE(
    "a NaN batch leaves the embedding tables and their optimizer state as before with every "
    "backward",
    "[embedding][trainer][nan]") {
  const Scenario scenario(15, kernels::Pooling::kSum);
  for (const auto backward : {EmbeddingBackward::kHostPlan, EmbeddingBackward::kDevicePlan,
                              EmbeddingBackward::kFastNondeterministic}) {
    INFO("backward " << static_cast<int>(backward));
    ModelSpec spec = scenario.model;
    for (auto& slot : spec.slots) slot.backward = backward;
    Trainer trainer(spec, scenario.optimizer, scenario.options,
                    std::make_unique<InMemoryBatchStream>(scenario.train.schema,
                                                          scenario.train.batch, 16, false, 3),
                    nullptr);
    InMemoryBatchStream stream(scenario.train.schema, scenario.train.batch, 16, false, 3);
    for (int step = 0; step < 2; ++step) trainer.train_step(*stream.next());
    // The tables and every optimizer state tensor of theirs.
    const auto embedding_state = [&trainer] {
      std::map<std::string, std::vector<float>> state;
      for (const auto& parameter : trainer.model().parameters().all()) {
        if (!parameter->row_sparse) continue;
        state[parameter->name] = parameter->value.to_vector<float>();
      }
      for (const auto& [name, tensor] : trainer.optimizer().state()) {
        if (name.rfind("embeddings/", 0) == 0) state[name] = tensor.to_vector<float>();
      }
      return state;
    };
    const auto before = embedding_state();
    io::Batch bad = *stream.next();
    bad.labels[0] = std::nanf("");
    CHECK_THROWS_WITH(trainer.train_step(bad), Catch::Contains("refused on the device"));
    CHECK(embedding_state() == before);
    // The step before it did move the tables: the comparison is not between idle tables.
    trainer.train_step(*stream.next());
    CHECK(embedding_state() != before);
  }
}

TEST_CASE("model.embedding_backward parses, round-trips and reaches every slot", "[config]") {
  const std::string text =
      "[data]\nsparse_slots = 2\n[model]\nembedding_backward = \"device_plan\"\n";
  Config config = config_from_toml_string(text, "inline");
  CHECK(config.model.embedding_backward == EmbeddingBackward::kDevicePlan);
  CHECK(Config{}.model.embedding_backward == EmbeddingBackward::kHostPlan);
  apply_override(config, "model.embedding_backward=fast_nondeterministic");
  CHECK(config.model.embedding_backward == EmbeddingBackward::kFastNondeterministic);
  const Config again = config_from_toml_string(to_toml(config), "dump");
  CHECK(again.model.embedding_backward == EmbeddingBackward::kFastNondeterministic);
  io::Schema schema;
  schema.sparse_slots = {{"a", 10}, {"b", 20}};
  for (const auto& spec : resolve_slots(again, schema)) {
    CHECK(spec.backward == EmbeddingBackward::kFastNondeterministic);
  }
  CHECK_THROWS_WITH(apply_override(config, "model.embedding_backward=gpu"),
                    Catch::Contains("host_plan") && Catch::Contains("device_plan"));
}

TEST_CASE("embedding bag gradients and touched rows with every backward setting",
          "[gradient][layers][embedding]") {
  for (const auto backward : {EmbeddingBackward::kHostPlan, EmbeddingBackward::kDevicePlan,
                              EmbeddingBackward::kFastNondeterministic}) {
    for (const auto pooling : {kernels::Pooling::kSum, kernels::Pooling::kMean}) {
      ParameterStore store{DType::kFloat64};
      Random random{7};
      LayerBuilder builder{store, random, kernels::Context::cpu()};
      EmbeddingSlotSpec spec{"slot", 10, 3, pooling, OutOfRange::kError};
      spec.backward = backward;
      EmbeddingBag<double> bag(builder, spec);
      // A repeated id, a single id, an empty bag, three ids.
      const io::SparseColumn column{{4, 4, 7, 1, 0, 9, 4}, {0, 3, 4, 4, 7}};
      const auto upstream = random_values(random, 4 * 5);
      const auto forward = [&] {
        Tensor out = Tensor::zeros({4, 5}, DType::kFloat64);
        bag.forward(column, 4, out, 1);
        return out;
      };
      check_parameter_gradients(
          store, [&] { return weighted_sum(forward(), upstream); },
          [&] {
            forward();
            bag.backward(Tensor::from_vector<double>({4, 5}, upstream), 1);
          },
          30);
      // The rows on the device (the first count of the capacity); a host copy only with the host
      // plan, which had them on the host anyway: a device plan is not read back.
      const Parameter& table = bag.table();
      const std::int64_t count = table.touched_row_count_device.to_vector<std::int64_t>().at(0);
      CHECK(count == 5);
      CHECK(table.touched_rows_device.narrow_first(0, count).to_vector<std::int64_t>() ==
            std::vector<std::int64_t>{0, 1, 4, 7, 9});
      CHECK(table.read_touched_rows() == std::vector<std::int64_t>{0, 1, 4, 7, 9});
      CHECK(table.touched_rows_on_host == (backward == EmbeddingBackward::kHostPlan));
      CHECK(table.touched_rows.size() == (backward == EmbeddingBackward::kHostPlan ? 5u : 0u));
      // Capacity: the distinct rows (host plan) or every id of the batch (device plans), the
      // gradient rows past the count zero.
      const std::int64_t capacity = backward == EmbeddingBackward::kHostPlan ? 5 : 7;
      CHECK(table.touched_row_capacity() == capacity);
      CHECK(table.gradient.dim(0) == capacity);
      const auto gradient_rows = table.gradient.to_vector<double>();
      CHECK(std::all_of(gradient_rows.begin() + 5 * 3, gradient_rows.end(),
                        [](double value) { return value == 0.0; }));

      // A batch of empty bags touches nothing; the next batch plans afresh.
      const io::SparseColumn empty{{}, {0, 0, 0}};
      Tensor out = Tensor::zeros({2, 5}, DType::kFloat64);
      bag.forward(empty, 2, out, 1);
      bag.backward(Tensor::zeros({2, 5}, DType::kFloat64), 1);
      CHECK(bag.table().read_touched_rows().empty());
      CHECK(bag.table().gradient.dim(0) == 0);
    }
  }
}
