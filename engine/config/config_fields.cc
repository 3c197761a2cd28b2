// Every configuration key, declared once: TOML key, C++ member, documentation and range check.
// Parsing, --set, validation, to_toml and the reference in docs/config.md all read this table.
// To add a key: add the member to config.h, one line here, and a row to docs/config.md.
#include <algorithm>
#include <utility>

#include "engine/config/field_table.h"

namespace drgrad::engine::config_internal {

template <>
struct EnumNames<DataSource> {
  static constexpr std::pair<DataSource, const char*> entries[] = {
      {DataSource::kGenerated, "generated"}, {DataSource::kFiles, "files"}};
};
template <>
struct EnumNames<GeneratorKind> {
  static constexpr std::pair<GeneratorKind, const char*> entries[] = {
      {GeneratorKind::kMmoe, "mmoe"}, {GeneratorKind::kDrgradSynthetic, "drgrad_synthetic"}};
};
template <>
struct EnumNames<kernels::Pooling> {
  static constexpr std::pair<kernels::Pooling, const char*> entries[] = {
      {kernels::Pooling::kSum, "sum"}, {kernels::Pooling::kMean, "mean"}};
};
template <>
struct EnumNames<OutOfRange> {
  static constexpr std::pair<OutOfRange, const char*> entries[] = {{OutOfRange::kError, "error"},
                                                                   {OutOfRange::kHash, "hash"}};
};
template <>
struct EnumNames<TaskType> {
  static constexpr std::pair<TaskType, const char*> entries[] = {
      {TaskType::kBinary, "binary"}, {TaskType::kRegression, "regression"}};
};
template <>
struct EnumNames<BackboneKind> {
  static constexpr std::pair<BackboneKind, const char*> entries[] = {
      {BackboneKind::kSharedBottom, "shared_bottom"},
      {BackboneKind::kMmoe, "mmoe"},
      {BackboneKind::kPle, "ple"}};
};
template <>
struct EnumNames<kernels::Activation> {
  static constexpr std::pair<kernels::Activation, const char*> entries[] = {
      {kernels::Activation::kRelu, "relu"},
      {kernels::Activation::kMish, "mish"},
      {kernels::Activation::kSigmoid, "sigmoid"}};
};
template <>
struct EnumNames<OptimizerKind> {
  static constexpr std::pair<OptimizerKind, const char*> entries[] = {
      {OptimizerKind::kSgd, "sgd"},
      {OptimizerKind::kAdam, "adam"},
      {OptimizerKind::kAdagrad, "adagrad"}};
};
template <>
struct EnumNames<AuxTowerInput> {
  static constexpr std::pair<AuxTowerInput, const char*> entries[] = {
      {AuxTowerInput::kShared, "shared"}, {AuxTowerInput::kOwn, "own"}};
};
template <>
struct EnumNames<RouterForm> {
  static constexpr std::pair<RouterForm, const char*> entries[] = {
      {RouterForm::kPaper, "paper"},
      {RouterForm::kPaired, "paired"},
      {RouterForm::kSymmetricHeads, "symmetric_heads"}};
};
template <>
struct EnumNames<RoutedParameters> {
  static constexpr std::pair<RoutedParameters, const char*> entries[] = {
      {RoutedParameters::kAll, "all"}, {RoutedParameters::kFirstLayer, "first_layer"}};
};
template <>
struct EnumNames<kernels::MatmulPrecision> {
  static constexpr std::pair<kernels::MatmulPrecision, const char*> entries[] = {
      {kernels::MatmulPrecision::kFp32, "fp32"},
      {kernels::MatmulPrecision::kTf32, "tf32"},
      {kernels::MatmulPrecision::kBf16, "bf16"}};
};
template <>
struct EnumNames<EmbeddingBackward> {
  static constexpr std::pair<EmbeddingBackward, const char*> entries[] = {
      {EmbeddingBackward::kHostPlan, "host_plan"},
      {EmbeddingBackward::kDevicePlan, "device_plan"},
      {EmbeddingBackward::kFastNondeterministic, "fast_nondeterministic"}};
};
template <>
struct EnumNames<Initializer> {
  static constexpr std::pair<Initializer, const char*> entries[] = {
      {Initializer::kXavierUniform, "xavier_uniform"}};
};

namespace {

std::vector<Field<SlotConfig>> slot_fields() {
  return {
      DRGRAD_CONFIG_FIELD(SlotConfig, name, "sparse slot of the data schema this entry overrides",
                          not_empty()),
      DRGRAD_CONFIG_FIELD(SlotConfig, vocabulary_size,
                          "rows of the slot's table; default: the schema's vocabulary size",
                          when_set(at_least(1))),
      DRGRAD_CONFIG_FIELD(SlotConfig, pooling, "pooling of this slot; default: features.pooling"),
      DRGRAD_CONFIG_FIELD(SlotConfig, out_of_range,
                          "ids outside the vocabulary; default: features.out_of_range"),
      DRGRAD_CONFIG_FIELD(SlotConfig, embedding_dim,
                          "embedding width of this slot; default: features.embedding_dim",
                          when_set(at_least(1))),
  };
}

std::vector<Field<TaskConfig>> task_fields() {
  return {
      DRGRAD_CONFIG_FIELD(TaskConfig, name, "task name, unique; used in logs and metrics",
                          not_empty()),
      DRGRAD_CONFIG_FIELD(TaskConfig, label, "label column the task reads; default: the name"),
      DRGRAD_CONFIG_FIELD(TaskConfig, type,
                          "binary: cross-entropy on logits; regression: squared error"),
      DRGRAD_CONFIG_FIELD(TaskConfig, loss_weight, "weight alpha of the task in the summed loss",
                          at_least_float(0.0)),
      DRGRAD_CONFIG_FIELD(TaskConfig, positive_weight,
                          "binary tasks: weight of positive samples in the loss",
                          greater_than(0.0)),
  };
}

ConfigLayout build_layout() {
  ConfigLayout layout;
  layout.fields = {
      // [data]
      DRGRAD_CONFIG_FIELD(Config, data.source,
                          "where samples come from: in-memory generator or files"),
      DRGRAD_CONFIG_FIELD(Config, data.generator,
                          "synthetic generator when source = \"generated\""),
      DRGRAD_CONFIG_FIELD(Config, data.train_samples, "generated training samples", at_least(1)),
      DRGRAD_CONFIG_FIELD(Config, data.eval_samples, "generated evaluation samples", at_least(0)),
      DRGRAD_CONFIG_FIELD(Config, data.seed, "seed of the generated task and samples", at_least(0)),
      DRGRAD_CONFIG_FIELD(Config, data.correlation, "mmoe generator: task correlation p",
                          in_closed_range(-1.0, 1.0)),
      DRGRAD_CONFIG_FIELD(Config, data.input_dim, "mmoe generator: dense input dimension d",
                          at_least(2)),
      DRGRAD_CONFIG_FIELD(Config, data.sparse_slots,
                          "mmoe generator: sparse slots whose ids bucket a projection of x",
                          at_least(0)),
      DRGRAD_CONFIG_FIELD(Config, data.sparse_vocabulary,
                          "generators: ids per sparse slot (buckets)", at_least(1)),
      DRGRAD_CONFIG_FIELD(Config, data.cos_theta,
                          "drgrad_synthetic generator: label2 = cos_theta * label1 + noise",
                          in_closed_range(-1.0, 1.0)),
      DRGRAD_CONFIG_FIELD(Config, data.noise_scale,
                          "generators: multiplies the label noise variance (0.01 mmoe, 0.002 "
                          "drgrad_synthetic); larger values make tasks harder",
                          at_least_float(0.0)),
      DRGRAD_CONFIG_FIELD(Config, data.binary_labels,
                          "generators: median-thresholded 0/1 labels instead of real targets"),
      DRGRAD_CONFIG_FIELD(Config, data.train_files, "source = \"files\": training data files"),
      DRGRAD_CONFIG_FIELD(Config, data.eval_files, "source = \"files\": evaluation data files"),
      DRGRAD_CONFIG_FIELD(Config, data.format, "source = \"files\": file format, \"auto\" detects",
                          not_empty()),
      DRGRAD_CONFIG_FIELD(Config, data.example_schema,
                          "tfrecord files: TOML file mapping Example features to dense, sparse "
                          "and label columns"),
      DRGRAD_CONFIG_FIELD(Config, data.skip_corrupt,
                          "source = \"files\": skip damaged records (counted) instead of failing"),
      DRGRAD_CONFIG_FIELD(Config, data.decode_threads, "source = \"files\": decode threads",
                          at_least(1)),
      // [features]
      DRGRAD_CONFIG_FIELD(Config, features.embedding_dim, "embedding width of every sparse slot",
                          at_least(1)),
      DRGRAD_CONFIG_FIELD(Config, features.pooling, "how a slot's ids are pooled per sample"),
      DRGRAD_CONFIG_FIELD(Config, features.out_of_range,
                          "ids outside the vocabulary: fail, or hash into it"),
      // [model]
      DRGRAD_CONFIG_FIELD(Config, model.backbone, "shared representation under the task towers"),
      DRGRAD_CONFIG_FIELD(Config, model.activation, "activation of every hidden layer"),
      DRGRAD_CONFIG_FIELD(Config, model.bottom_units, "shared_bottom: hidden layer widths",
                          each_at_least(1)),
      DRGRAD_CONFIG_FIELD(Config, model.num_experts, "mmoe: number of experts", at_least(1)),
      DRGRAD_CONFIG_FIELD(Config, model.expert_units, "mmoe and ple: hidden widths of an expert",
                          each_at_least(1)),
      DRGRAD_CONFIG_FIELD(Config, model.ple_levels, "ple: extraction levels", at_least(1)),
      DRGRAD_CONFIG_FIELD(Config, model.task_experts, "ple: experts per task per level",
                          at_least(1)),
      DRGRAD_CONFIG_FIELD(Config, model.shared_experts, "ple: shared experts per level",
                          at_least(1)),
      DRGRAD_CONFIG_FIELD(Config, model.tower_units,
                          "hidden widths of each task tower; a 1-unit output layer follows",
                          each_at_least(1)),
      DRGRAD_CONFIG_FIELD(Config, model.init, "initialisation of dense weights"),
      DRGRAD_CONFIG_FIELD(Config, model.embedding_backward,
                          "where the embedding backward sorts the ids (host or device), or "
                          "atomic adds (docs/gpu.md)"),
      DRGRAD_CONFIG_FIELD(Config, model.split_towers,
                          "split the primary task into T' (own view) and T'' (shared v_s)"),
      DRGRAD_CONFIG_FIELD(Config, model.primary_task,
                          "split towers: the primary task's name (empty: the first task)"),
      DRGRAD_CONFIG_FIELD(Config, model.aux_tower_input,
                          "split towers: auxiliary towers read v_s or their own gate output"),
      DRGRAD_CONFIG_FIELD(Config, model.personal_slots,
                          "split towers: sparse slots feeding the personalized gate on v_s"),
      DRGRAD_CONFIG_FIELD(Config, model.personal_gate_stop_gradient,
                          "personalized gate: no gradient into the embeddings it reads"),
      // [strategy]
      DRGRAD_CONFIG_FIELD(Config, strategy.name,
                          "how task gradients combine: none, drgrad, pcgrad or cagrad",
                          not_empty()),
      DRGRAD_CONFIG_FIELD(Config, strategy.router_form,
                          "drgrad: reading of Eq. 2 (paper, paired, symmetric_heads)"),
      DRGRAD_CONFIG_FIELD(Config, strategy.routed_parameters,
                          "drgrad: route all tower parameters or the first layer only"),
      DRGRAD_CONFIG_FIELD(Config, strategy.gamma, "drgrad: lambda = clip(ratio, 0, 1) ^ gamma",
                          greater_than(0.0)),
      DRGRAD_CONFIG_FIELD(Config, strategy.rho,
                          "drgrad: updater decay, sigma <- rho sigma + |g| (1: the paper)",
                          in_closed_range(0.0, 1.0)),
      DRGRAD_CONFIG_FIELD(Config, strategy.telemetry_every,
                          "drgrad: telemetry line every N steps (0: none)", at_least(0)),
      DRGRAD_CONFIG_FIELD(Config, strategy.cagrad_c, "cagrad: conflict-averse radius c",
                          at_least_float(0.0)),
      // [optimizer]
      DRGRAD_CONFIG_FIELD(Config, optimizer.name, "update rule for every parameter"),
      DRGRAD_CONFIG_FIELD(Config, optimizer.learning_rate, "step size", greater_than(0.0)),
      DRGRAD_CONFIG_FIELD(Config, optimizer.momentum, "sgd: momentum",
                          in_half_open_range(0.0, 1.0)),
      DRGRAD_CONFIG_FIELD(Config, optimizer.beta1, "adam: first-moment decay",
                          in_half_open_range(0.0, 1.0)),
      DRGRAD_CONFIG_FIELD(Config, optimizer.beta2, "adam: second-moment decay",
                          in_half_open_range(0.0, 1.0)),
      DRGRAD_CONFIG_FIELD(Config, optimizer.epsilon, "adam and adagrad: denominator guard",
                          greater_than(0.0)),
      DRGRAD_CONFIG_FIELD(Config, optimizer.weight_decay, "weight decay coefficient (0: none)",
                          at_least_float(0.0)),
      DRGRAD_CONFIG_FIELD(Config, optimizer.initial_accumulator, "adagrad: starting accumulator",
                          at_least_float(0.0)),
      DRGRAD_CONFIG_FIELD(Config, optimizer.embedding_learning_rate,
                          "step size of embedding tables (0: learning_rate)", at_least_float(0.0)),
      // [training]
      DRGRAD_CONFIG_FIELD(Config, training.batch_size, "samples per step", at_least(1)),
      DRGRAD_CONFIG_FIELD(Config, training.epochs, "passes over the training data", at_least(0)),
      DRGRAD_CONFIG_FIELD(Config, training.steps, "steps to train (0: derived from epochs)",
                          at_least(0)),
      DRGRAD_CONFIG_FIELD(Config, training.eval_every,
                          "evaluate every N steps (0: at the end only)", at_least(0)),
      DRGRAD_CONFIG_FIELD(Config, training.seed, "seed of initialisation and shuffling",
                          at_least(0)),
      DRGRAD_CONFIG_FIELD(Config, training.device, "where to train"),
      DRGRAD_CONFIG_FIELD(Config, training.cpu_threads,
                          "BLAS threads for CPU matrix products; 0 uses every core (small "
                          "layers run fastest on 1)",
                          at_least(0)),
      DRGRAD_CONFIG_FIELD(Config, training.matmul_precision,
                          "CUDA matrix products: fp32, or tensor cores with inputs rounded to "
                          "tf32 or bf16 (fp32 accumulation and fp32 weights in every mode; the "
                          "CPU always computes in fp32)"),
      DRGRAD_CONFIG_FIELD(Config, training.cuda_graph,
                          "CUDA: capture the training step once per batch shape as a CUDA graph "
                          "and replay it (needs model.embedding_backward other than host_plan and "
                          "a strategy that reads nothing back: none or drgrad)"),
      DRGRAD_CONFIG_FIELD(Config, training.log_every, "log every N steps (0: never)", at_least(0)),
      DRGRAD_CONFIG_FIELD(Config, training.checkpoint_every,
                          "checkpoint every N steps (0: at the end only)", at_least(0)),
      // [output]
      DRGRAD_CONFIG_FIELD(Config, output.run_dir, "directory for config.toml, logs, checkpoints",
                          not_empty()),
      DRGRAD_CONFIG_FIELD(Config, output.save_checkpoints, "write checkpoints at all"),
      DRGRAD_CONFIG_FIELD(Config, output.keep_checkpoints, "newest checkpoints kept (0: all)",
                          at_least(0)),
  };

  layout.arrays.push_back(std::make_unique<TableArray<SlotConfig>>(
      "features.slot", "per-slot overrides of the [features] defaults",
      [](Config& config) -> std::vector<SlotConfig>& { return config.features.slots; },
      [](const Config& config) -> const std::vector<SlotConfig>& { return config.features.slots; },
      slot_fields()));
  layout.arrays.push_back(std::make_unique<TableArray<TaskConfig>>(
      "tasks", "the tasks to train; absent: one task per data label",
      [](Config& config) -> std::vector<TaskConfig>& { return config.tasks; },
      [](const Config& config) -> const std::vector<TaskConfig>& { return config.tasks; },
      task_fields()));

  // Dump order: sections in declaration order; [[features.slot]] right after [features], then
  // [[tasks]] before [model].
  auto add_section = [&layout](std::string_view section) {
    for (std::size_t i = 0; i < layout.fields.size(); ++i) {
      if (layout.fields[i].key.starts_with(std::string(section) + ".")) {
        layout.order.push_back({false, i});
      }
    }
  };
  add_section("data");
  add_section("features");
  layout.order.push_back({true, 0});
  layout.order.push_back({true, 1});
  for (const char* section : {"model", "strategy", "optimizer", "training", "output"}) {
    add_section(section);
  }
  return layout;
}

}  // namespace

const ConfigLayout& config_layout() {
  static const ConfigLayout layout = build_layout();
  return layout;
}

}  // namespace drgrad::engine::config_internal

namespace drgrad::engine {

namespace {
template <typename E>
const char* enum_name(E value) {
  for (const auto& [candidate, name] : config_internal::EnumNames<E>::entries) {
    if (candidate == value) return name;
  }
  return "?";
}
}  // namespace

const char* data_source_name(DataSource source) {
  return enum_name(source);
}
const char* generator_name(GeneratorKind generator) {
  return enum_name(generator);
}
const char* optimizer_name(OptimizerKind optimizer) {
  return enum_name(optimizer);
}

}  // namespace drgrad::engine
