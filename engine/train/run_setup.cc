// prepare_run: config sections mapped onto model, optimizer, trainer and data settings.
#include "engine/train/run_setup.h"

#include <filesystem>
#include "engine/config/example_mapping_file.h"

#include "engine/config/generated_data_source.h"
#include "engine/multitask/drgrad_strategy.h"
#include "engine/multitask/surgery_strategy.h"
#include "engine/train/file_batch_stream.h"

namespace drgrad::engine {

namespace {
io::DatasetReaderOptions reader_options(const Config& config) {
  io::DatasetReaderOptions options;
  const std::string& format = config.data.format;
  if (format == "auto") {
    options.format = io::DataFormat::detect;
  } else if (format == "shard" || format == "shards") {
    options.format = io::DataFormat::shard;
  } else if (format == "tfrecord") {
    options.format = io::DataFormat::tfrecord;
  } else {
    throw ConfigError("data.format = \"" + format +
                      "\" is not a format: use auto, shard or tfrecord");
  }
  if (!config.data.example_schema.empty()) {
    options.example_mapping = load_example_mapping(config.data.example_schema);
  }
  options.skip_corrupt = config.data.skip_corrupt;
  options.decode_threads = static_cast<int>(config.data.decode_threads);
  return options;
}
}  // namespace

std::unique_ptr<MultiTaskStrategy> make_strategy(const Config& config,
                                                 const MultiTaskModel<float>& model,
                                                 const std::string& run_dir) {
  const StrategyConfig& s = config.strategy;
  if (s.name == "none") return nullptr;
  if (s.name == "drgrad") {
    DrgradSettings settings;
    settings.router = {s.router_form, s.routed_parameters, s.gamma};
    settings.rho = s.rho;
    settings.telemetry_every = s.telemetry_every;
    if (!run_dir.empty()) {
      settings.telemetry_path =
          (std::filesystem::path(run_dir) / "drgrad_telemetry.jsonl").string();
    }
    try {
      return std::make_unique<DrgradStrategy>(settings, model);
    } catch (const std::invalid_argument& error) {
      throw ConfigError(std::string("strategy.name = \"drgrad\": ") + error.what());
    }
  }
  if (config.model.split_towers) {
    throw ConfigError("strategy \"" + s.name +
                      "\" combines task gradients on a plain backbone; set model.split_towers = "
                      "false (split towers are for drgrad)");
  }
  GradientSurgeryOptions options;
  options.method = s.name == "pcgrad" ? SurgeryMethod::kPcgrad : SurgeryMethod::kCagrad;
  options.pcgrad.seed = static_cast<std::uint64_t>(config.training.seed);
  options.cagrad.c = s.cagrad_c;
  return std::make_unique<SurgeryStrategy>(model.context(), options);
}

void require_usable_device(const kernels::Device& device) {
  if (device.is_cpu()) return;
  const std::string key = "training.device = \"" + device.to_string() + "\"";
  if (!kernels::built_with_cuda()) {
    throw ConfigError(key +
                      ": this drgrad build has no CUDA backend; set training.device = \"cpu\" "
                      "(--set training.device=cpu) or rebuild with -DDRGRAD_CUDA=ON");
  }
  const int count = kernels::cuda_device_count();
  if (count == 0) {
    throw ConfigError(key +
                      ": no usable CUDA device on this machine (no GPU is visible, or the NVIDIA "
                      "driver is missing or older than this build's CUDA runtime); set "
                      "training.device = \"cpu\" (--set training.device=cpu) or run on a machine "
                      "with a GPU and a current driver (nvidia-smi shows both)");
  }
  if (device.index < 0 || device.index >= count) {
    throw ConfigError(key + ": this machine has " + std::to_string(count) +
                      " CUDA device(s), numbered 0 to " + std::to_string(count - 1) +
                      "; pick one of those or set training.device = \"cpu\"");
  }
}

RunSetup prepare_run(const Config& config) {
  require_usable_device(config.training.device);
  RunSetup setup;
  const auto seed = static_cast<std::uint64_t>(config.training.seed);
  const std::int64_t batch_size = config.training.batch_size;
  if (config.data.source == DataSource::kGenerated) {
    io::GeneratedData train = generate_configured_data(config.data, DataSplit::kTrain);
    setup.schema = train.schema;
    setup.train_data = std::make_unique<InMemoryBatchStream>(train.schema, std::move(train.batch),
                                                             batch_size, true, seed);
    if (config.data.eval_samples > 0) {
      io::GeneratedData eval = generate_configured_data(config.data, DataSplit::kEval);
      setup.eval_data = std::make_unique<InMemoryBatchStream>(
          eval.schema, std::move(eval.batch), std::max<std::int64_t>(batch_size, 4096), false,
          seed);
    }
  } else {
    if (config.data.train_files.empty()) {
      throw ConfigError(
          "data.source = \"files\" needs data.train_files (a list of shard or "
          "TFRecord files)");
    }
    io::DatasetReaderOptions options = reader_options(config);
    options.files = config.data.train_files;
    options.batch_size = batch_size;
    options.shuffle = true;
    options.seed = seed;
    auto train = std::make_unique<FileBatchStream>(options);
    setup.schema = train->schema();
    setup.train_data = std::move(train);
    if (!config.data.eval_files.empty()) {
      options.files = config.data.eval_files;
      options.batch_size = std::max<std::int64_t>(batch_size, 4096);
      options.shuffle = false;
      options.expected_schema = setup.schema;
      setup.eval_data = std::make_unique<FileBatchStream>(options);
    }
  }

  ModelSpec& model = setup.model;
  model.num_dense = static_cast<std::int64_t>(setup.schema.num_dense());
  model.slots = resolve_slots(config, setup.schema);
  for (const ResolvedTask& task : resolve_tasks(config, setup.schema)) {
    model.tasks.push_back({task.config.name, task.label_index, task.config.type,
                           task.config.loss_weight, task.config.positive_weight});
  }
  const ModelConfig& m = config.model;
  model.backbone = m.backbone;
  model.activation = m.activation;
  model.bottom_units = m.bottom_units;
  model.num_experts = m.num_experts;
  model.expert_units = m.expert_units;
  model.ple_levels = m.ple_levels;
  model.task_experts = m.task_experts;
  model.shared_experts = m.shared_experts;
  model.tower_units = m.tower_units;
  if (m.split_towers) {
    model.split.enabled = true;
    model.split.primary_task = 0;
    if (!m.primary_task.empty()) {
      model.split.primary_task = -1;
      for (std::size_t k = 0; k < model.tasks.size(); ++k) {
        if (model.tasks[k].name == m.primary_task) model.split.primary_task = static_cast<int>(k);
      }
      if (model.split.primary_task < 0) {
        std::string names;
        for (const auto& task : model.tasks) names += (names.empty() ? "" : ", ") + task.name;
        throw ConfigError("model.primary_task = \"" + m.primary_task +
                          "\" names no task; the tasks are: " + names);
      }
    }
    model.split.aux_read_shared = m.aux_tower_input == AuxTowerInput::kShared;
    model.split.personal_slots = m.personal_slots;
    model.split.stop_personal_gradient = m.personal_gate_stop_gradient;
  }
  try {
    model.validate();
  } catch (const std::invalid_argument& error) {
    throw ConfigError(std::string("invalid model: ") + error.what());
  }

  const OptimizerConfig& o = config.optimizer;
  setup.optimizer = {o.name,
                     o.learning_rate,
                     o.momentum,
                     o.beta1,
                     o.beta2,
                     o.epsilon,
                     o.weight_decay,
                     o.initial_accumulator,
                     o.embedding_learning_rate};

  TrainingOptions& t = setup.training;
  t.batch_size = batch_size;
  t.epochs = config.training.epochs;
  t.steps = config.training.steps;
  t.eval_every = config.training.eval_every;
  t.log_every = config.training.log_every;
  t.checkpoint_every = config.training.checkpoint_every;
  t.seed = seed;
  t.device = config.training.device;
  t.cpu_threads = static_cast<int>(config.training.cpu_threads);
  t.matmul_precision = config.training.matmul_precision;
  t.cuda_graph = config.training.cuda_graph;
  t.run_dir = config.output.run_dir;
  t.save_checkpoints = config.output.save_checkpoints;
  t.keep_checkpoints = static_cast<int>(config.output.keep_checkpoints);
  return setup;
}

}  // namespace drgrad::engine
