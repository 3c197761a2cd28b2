// prepare_run: config sections mapped onto model, optimizer, trainer and data settings.
#include "engine/train/run_setup.h"

#include "engine/config/generated_data_source.h"

namespace drgrad::engine {

RunSetup prepare_run(const Config& config) {
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
    // TODO(#3): stream shards and TFRecord files through the io reader.
    throw ConfigError(
        "data.source = \"files\" is not supported yet by this build: training reads generated "
        "data only (set data.source = \"generated\")");
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
  t.run_dir = config.output.run_dir;
  t.save_checkpoints = config.output.save_checkpoints;
  t.keep_checkpoints = static_cast<int>(config.output.keep_checkpoints);
  return setup;
}

}  // namespace drgrad::engine
