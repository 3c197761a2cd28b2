// The run configuration: a typed Config loaded from TOML, `--set key=value` overrides, strict
// validation with messages that name the key and its line, and a dump back to TOML for the run
// directory. Every key is declared once, in config_fields.cc; docs/config.md lists them all.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "engine/layers/embedding.h"
#include "engine/models/model_spec.h"
#include "engine/multitask/drgrad_router.h"
#include "engine/optim/optimizer.h"  // OptimizerKind
#include "kernels/activation/activation.h"
#include "kernels/core/device.h"
#include "kernels/embedding/embedding_bag.h"

namespace drgrad::engine {

// Any problem with a configuration a user wrote: a missing file, a TOML syntax error, an unknown
// key, a wrong type, an invalid value or override. The message says what, where (file and
// line, or the --set text) and what to do.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class DataSource { kGenerated, kFiles };
enum class GeneratorKind { kMmoe, kDrgradSynthetic };
enum class Initializer { kXavierUniform };
enum class AuxTowerInput { kShared, kOwn };

struct DataConfig {
  DataSource source = DataSource::kGenerated;
  GeneratorKind generator = GeneratorKind::kMmoe;
  std::int64_t train_samples = 20000;
  std::int64_t eval_samples = 5000;
  std::int64_t seed = 1;
  double correlation = 0.5;  // mmoe generator: task correlation p
  std::int64_t input_dim = 100;
  std::int64_t sparse_slots = 0;
  std::int64_t sparse_vocabulary = 100;
  double cos_theta = 0.5;    // drgrad_synthetic generator
  double noise_scale = 1.0;  // generators: multiplies the label noise variance
  bool binary_labels = true;
  std::vector<std::string> train_files;
  std::vector<std::string> eval_files;
  std::string format = "auto";
  std::string example_schema;  // tfrecord files: TOML file mapping Example features to slots
  bool skip_corrupt = false;
  std::int64_t decode_threads = 2;
};

// Per-slot overrides of the [features] defaults; an unset field inherits the default (and the
// vocabulary size comes from the data schema).
struct SlotConfig {
  std::string name;
  std::optional<std::int64_t> vocabulary_size;
  std::optional<kernels::Pooling> pooling;
  std::optional<OutOfRange> out_of_range;
  std::optional<std::int64_t> embedding_dim;
};

struct FeaturesConfig {
  std::int64_t embedding_dim = 8;
  kernels::Pooling pooling = kernels::Pooling::kSum;
  OutOfRange out_of_range = OutOfRange::kError;
  std::vector<SlotConfig> slots;  // [[features.slot]]
};

struct TaskConfig {
  std::string name;
  std::string label;  // label column; load_config sets it to `name` when left empty
  TaskType type = TaskType::kBinary;
  double loss_weight = 1.0;
  double positive_weight = 1.0;  // binary tasks only
};

struct ModelConfig {
  BackboneKind backbone = BackboneKind::kMmoe;
  kernels::Activation activation = kernels::Activation::kRelu;
  std::vector<std::int64_t> bottom_units{128, 64};
  std::int64_t num_experts = 4;
  std::vector<std::int64_t> expert_units{64, 32};
  std::int64_t ple_levels = 2;
  std::int64_t task_experts = 1;
  std::int64_t shared_experts = 1;
  std::vector<std::int64_t> tower_units{32};
  Initializer init = Initializer::kXavierUniform;
  EmbeddingBackward embedding_backward = EmbeddingBackward::kHostPlan;
  // Split towers (DRGrad, Split-MMoE) and the personalized gate.
  bool split_towers = false;
  std::string primary_task;  // empty: the first task
  AuxTowerInput aux_tower_input = AuxTowerInput::kShared;
  std::vector<std::string> personal_slots;
  bool personal_gate_stop_gradient = true;
};

// How gradients of several tasks are combined. name: "none", "drgrad", "pcgrad", "cagrad".
struct StrategyConfig {
  std::string name = "none";
  RouterForm router_form = RouterForm::kPaper;
  RoutedParameters routed_parameters = RoutedParameters::kAll;
  double gamma = 1.0;
  double rho = 1.0;
  std::int64_t telemetry_every = 1;
  double cagrad_c = 0.4;
};

struct OptimizerConfig {
  OptimizerKind name = OptimizerKind::kAdam;
  double learning_rate = 1e-3;
  double momentum = 0.9;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double epsilon = 1e-8;
  double weight_decay = 0.0;
  double initial_accumulator = 0.1;
  double embedding_learning_rate = 0.0;  // 0: same as learning_rate
};

struct TrainingConfig {
  std::int64_t batch_size = 512;
  std::int64_t epochs = 1;
  std::int64_t steps = 0;       // 0: derived from epochs
  std::int64_t eval_every = 0;  // 0: evaluate only at the end
  std::int64_t seed = 1;
  kernels::Device device = kernels::Device::cpu();
  std::int64_t cpu_threads = 1;  // BLAS threads on the CPU; 0: all cores
  kernels::MatmulPrecision matmul_precision = kernels::MatmulPrecision::kFp32;  // CUDA products
  bool cuda_graph = false;  // capture each batch shape's step once as a CUDA graph and replay it
  std::int64_t log_every = 50;
  std::int64_t checkpoint_every = 0;  // 0: checkpoint only at the end
};

struct OutputConfig {
  std::string run_dir = "runs/default";
  bool save_checkpoints = true;
  std::int64_t keep_checkpoints = 2;  // 0: keep all
};

struct Config {
  DataConfig data;
  FeaturesConfig features;
  std::vector<TaskConfig> tasks;  // [[tasks]]; empty: one task per data label (resolve_tasks)
  ModelConfig model;
  StrategyConfig strategy;
  OptimizerConfig optimizer;
  TrainingConfig training;
  OutputConfig output;
};

// Reads and validates the TOML file at `path`, then applies `overrides` ("key=value", as given
// to --set) in order, fills derived defaults (a task's label from its name) and validates the
// result. Throws ConfigError.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// The same from TOML text; `source_name` stands for the file in messages.
Config config_from_toml_string(std::string_view text, std::string_view source_name,
                               const std::vector<std::string>& overrides = {});

// Applies one override "key=value" to `config`. The key is a dotted path ("training.batch_size",
// "tasks.0.loss_weight", "features.slot.1.pooling"); index N == current count appends a new
// entry. The value is parsed as a TOML value (1, 0.5, true, "text", [64, 32],
// [{name = "click"}]); text that is not valid TOML, or any value given for a string key, is
// taken as a string. Checks the type and the key's own range; cross-key checks are left to
// validate_config. Throws ConfigError naming the override.
void apply_override(Config& config, const std::string& key_equals_value);

// Fills derived defaults: an empty task label becomes the task's name.
void finalize_config(Config& config);

// Checks every value's range and the relations between keys (unique task names, files given
// when data.source = "files", ...). Throws ConfigError naming the key.
void validate_config(const Config& config);

// The effective configuration as TOML, with a comment line per key; loading it gives back an
// equal Config. Unset per-slot overrides are left out.
std::string to_toml(const Config& config);

// Every key with its type, default and description, as a Markdown table (docs/config.md holds
// a copy; a test checks they agree). Keys of arrays of tables read "tasks.N.name".
std::string config_reference_markdown();
// Every key, in to_toml order, in the same notation.
std::vector<std::string> config_keys();

// A task with the column of io::Batch::labels it reads.
struct ResolvedTask {
  TaskConfig config;
  int label_index = 0;
};

// The tasks to train: config.tasks when given (each label must exist in `schema`), otherwise one
// task per schema label, named after it, binary when data.binary_labels is true and regression
// otherwise, with default weights. Throws ConfigError naming the task and the known labels.
std::vector<ResolvedTask> resolve_tasks(const Config& config, const io::Schema& schema);

// One embedding spec per sparse slot of `schema`, in schema order: [features] defaults, then the
// matching [[features.slot]] overrides. The vocabulary size is the override or else the
// schema's. Throws ConfigError for an override naming no slot of the schema or a slot without a
// known vocabulary size.
std::vector<EmbeddingSlotSpec> resolve_slots(const Config& config, const io::Schema& schema);

// Names of enum values as written in TOML.
const char* data_source_name(DataSource source);
const char* generator_name(GeneratorKind generator);
const char* optimizer_name(OptimizerKind optimizer);

}  // namespace drgrad::engine
