// Tests of the TOML configuration: loading, defaults, every promised piece of every error
// message, --set overrides, validation, the to_toml round trip, the example configs and the
// docs/config.md reference.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/config/config.h"
#include "engine/config/generated_data_source.h"

using namespace drgrad;
using namespace drgrad::engine;
using Catch::Contains;

namespace {

Config parse(const std::string& text, const std::vector<std::string>& overrides = {}) {
  return config_from_toml_string(text, "cfg.toml", overrides);
}

// The ConfigError message of `action`, failing the test when it does not throw one.
template <typename Action>
std::string error_of(Action&& action) {
  try {
    action();
  } catch (const ConfigError& error) {
    return error.what();
  }
  FAIL("expected a ConfigError");
  return "";
}

const char* kFullConfig = R"(# a complete configuration
[data]
source = "generated"
generator = "drgrad_synthetic"
train_samples = 3000
eval_samples = 500
seed = 7
cos_theta = -0.5
binary_labels = false

[features]
embedding_dim = 4
pooling = "mean"
out_of_range = "hash"

[[features.slot]]
name = "x26"
vocabulary_size = 50
embedding_dim = 6

[[tasks]]
name = "first"
label = "label1"
type = "regression"
loss_weight = 2.0

[[tasks]]
name = "label2"
positive_weight = 3

[model]
backbone = "ple"
activation = "mish"
expert_units = [128]
ple_levels = 2
task_experts = 2
shared_experts = 1
tower_units = [64, 16]

[optimizer]
name = "sgd"
learning_rate = 0.05
momentum = 0.5

[training]
batch_size = 32
epochs = 3
device = "cpu"
log_every = 0

[output]
run_dir = "runs/full"
keep_checkpoints = 0
)";

}  // namespace

TEST_CASE("config: defaults hold for an empty file and pass validation", "[config]") {
  const Config config = parse("");
  const Config defaults;
  REQUIRE(to_toml(config) == to_toml(defaults));
  REQUIRE_NOTHROW(validate_config(defaults));
  CHECK(config.data.source == DataSource::kGenerated);
  CHECK(config.data.generator == GeneratorKind::kMmoe);
  CHECK(config.data.train_samples == 20000);
  CHECK(config.data.correlation == 0.5);
  CHECK(config.features.embedding_dim == 8);
  CHECK(config.tasks.empty());
  CHECK(config.model.backbone == BackboneKind::kMmoe);
  CHECK(config.model.bottom_units == std::vector<std::int64_t>{128, 64});
  CHECK(config.model.tower_units == std::vector<std::int64_t>{32});
  CHECK(config.optimizer.name == OptimizerKind::kAdam);
  CHECK(config.optimizer.learning_rate == 1e-3);
  CHECK(config.training.batch_size == 512);
  CHECK(config.training.device.is_cpu());
  CHECK(config.output.run_dir == "runs/default");
}

TEST_CASE("config: a complete file loads every section", "[config]") {
  const Config config = parse(kFullConfig);
  CHECK(config.data.generator == GeneratorKind::kDrgradSynthetic);
  CHECK(config.data.train_samples == 3000);
  CHECK(config.data.seed == 7);
  CHECK(config.data.cos_theta == -0.5);
  CHECK_FALSE(config.data.binary_labels);
  CHECK(config.features.pooling == kernels::Pooling::kMean);
  CHECK(config.features.out_of_range == OutOfRange::kHash);
  REQUIRE(config.features.slots.size() == 1);
  CHECK(config.features.slots[0].name == "x26");
  CHECK(config.features.slots[0].vocabulary_size == 50);
  CHECK(config.features.slots[0].embedding_dim == 6);
  CHECK_FALSE(config.features.slots[0].pooling.has_value());
  REQUIRE(config.tasks.size() == 2);
  CHECK(config.tasks[0].label == "label1");
  CHECK(config.tasks[0].type == TaskType::kRegression);
  CHECK(config.tasks[0].loss_weight == 2.0);
  CHECK(config.tasks[1].label == "label2");       // defaults to the name
  CHECK(config.tasks[1].positive_weight == 3.0);  // an integer is accepted for a float key
  CHECK(config.model.backbone == BackboneKind::kPle);
  CHECK(config.model.activation == kernels::Activation::kMish);
  CHECK(config.model.tower_units == std::vector<std::int64_t>{64, 16});
  CHECK(config.optimizer.name == OptimizerKind::kSgd);
  CHECK(config.optimizer.momentum == 0.5);
  CHECK(config.training.epochs == 3);
  CHECK(config.output.keep_checkpoints == 0);
}

TEST_CASE("config: unknown keys name the key, the line and a suggestion", "[config]") {
  const std::string message =
      error_of([] { parse("[model]\nbackbone = \"ple\"\nnum_expert = 3\n"); });
  CHECK_THAT(message, Contains("cfg.toml:3"));
  CHECK_THAT(message, Contains("unknown key 'model.num_expert'"));
  CHECK_THAT(message, Contains("did you mean 'model.num_experts'"));

  const std::string section = error_of([] { parse("\n[modle]\nbackbone = \"ple\"\n"); });
  CHECK_THAT(section, Contains("cfg.toml:2"));
  CHECK_THAT(section, Contains("'modle'"));
  CHECK_THAT(section, Contains("did you mean 'model'"));

  const std::string in_task = error_of([] { parse("[[tasks]]\nname = \"a\"\nweight = 2\n"); });
  CHECK_THAT(in_task, Contains("cfg.toml:3"));
  CHECK_THAT(in_task, Contains("tasks.0.weight"));
  CHECK_THAT(in_task, Contains("Keys of a [[tasks]] entry are: name, label"));

  const std::string dotted = error_of([] { parse("training.batch_sise = 3\n"); });
  CHECK_THAT(dotted, Contains("cfg.toml:1"));
  CHECK_THAT(dotted, Contains("training.batch_sise"));
}

TEST_CASE("config: wrong types name key, line, expected and found type", "[config]") {
  const std::string message = error_of([] { parse("[training]\nbatch_size = \"512\"\n"); });
  CHECK_THAT(message, Contains("cfg.toml:2"));
  CHECK_THAT(message, Contains("training.batch_size"));
  CHECK_THAT(message, Contains("expects an integer"));
  CHECK_THAT(message, Contains("found a string (\"512\")"));

  const std::string float_for_int = error_of([] { parse("[training]\n\nepochs = 2.5\n"); });
  CHECK_THAT(float_for_int, Contains("cfg.toml:3"));
  CHECK_THAT(float_for_int, Contains("found a float (2.5)"));

  const std::string array = error_of([] { parse("[model]\ntower_units = [32, \"a\"]\n"); });
  CHECK_THAT(array, Contains("model.tower_units"));
  CHECK_THAT(array, Contains("element 1 expects an integer"));

  const std::string section = error_of([] { parse("model = 3\n"); });
  CHECK_THAT(section, Contains("cfg.toml:1"));
  CHECK_THAT(section, Contains("'model' is a table"));

  const std::string tasks = error_of([] { parse("tasks = 5\n"); });
  CHECK_THAT(tasks, Contains("expects an array of tables"));
}

TEST_CASE("config: bad enum values list the allowed ones", "[config]") {
  const std::string message = error_of([] { parse("[model]\n\n\nbackbone = \"mmoee\"\n"); });
  CHECK_THAT(message, Contains("cfg.toml:4"));
  CHECK_THAT(message, Contains("model.backbone"));
  CHECK_THAT(message, Contains("\"mmoee\""));
  CHECK_THAT(message, Contains("shared_bottom, mmoe, ple"));

  const std::string device = error_of([] { parse("[training]\ndevice = \"tpu\"\n"); });
  CHECK_THAT(device, Contains("training.device"));
  CHECK_THAT(device, Contains("cpu, cuda or cuda:N"));

  // An index past int made std::stoi throw std::out_of_range, which left as "error: stoi".
  const std::string huge = error_of([] { parse("[training]\ndevice = \"cuda:99999999999\"\n"); });
  CHECK_THAT(huge, Contains("cfg.toml:2"));
  CHECK_THAT(huge, Contains("training.device"));
  CHECK_THAT(huge, Contains("\"cuda:99999999999\""));
  CHECK_THAT(huge, Contains("cpu, cuda or cuda:N"));
}

TEST_CASE("config: out-of-range values name the key, the line and the rule", "[config]") {
  const std::string message = error_of([] { parse("[training]\nbatch_size = 0\n"); });
  CHECK_THAT(message, Contains("cfg.toml:2"));
  CHECK_THAT(message, Contains("training.batch_size"));
  CHECK_THAT(message, Contains("must be >= 1"));

  CHECK_THAT(error_of([] { parse("[optimizer]\nlearning_rate = -1\n"); }), Contains("must be > 0"));
  CHECK_THAT(error_of([] { parse("[optimizer]\nbeta2 = 1.0\n"); }), Contains("optimizer.beta2"));
  CHECK_THAT(error_of([] { parse("[data]\ncorrelation = 1.5\n"); }),
             Contains("must be in [-1.0, 1.0]"));
  CHECK_THAT(error_of([] { parse("[model]\nexpert_units = [64, 0]\n"); }),
             Contains("element 1 must be >= 1"));
  CHECK_THAT(error_of([] { parse("[[tasks]]\nname = \"a\"\nloss_weight = -1.0\n"); }),
             Contains("cfg.toml:3"));
}

TEST_CASE("config: relations between keys are checked", "[config]") {
  CHECK_THAT(error_of([] { parse("[data]\nsource = \"files\"\n"); }),
             Contains("needs data.train_files"));
  const std::string duplicate =
      error_of([] { parse("[[tasks]]\nname = \"a\"\n[[tasks]]\nname = \"a\"\n"); });
  CHECK_THAT(duplicate, Contains("cfg.toml:4"));
  CHECK_THAT(duplicate, Contains("must be unique"));
  CHECK_THAT(error_of([] {
               parse("[[tasks]]\nname = \"a\"\ntype = \"regression\"\npositive_weight = 2.0\n");
             }),
             Contains("binary tasks only"));
  CHECK_THAT(error_of([] { parse("[[tasks]]\nloss_weight = 1.0\n"); }), Contains("tasks.0.name"));
  CHECK_THAT(error_of([] { parse("[training]\nepochs = 0\n"); }), Contains("trains nothing"));
  CHECK_NOTHROW(parse("[training]\nepochs = 0\nsteps = 10\n"));
  CHECK_THAT(error_of([] { parse("[model]\nbackbone = \"shared_bottom\"\nbottom_units = []\n"); }),
             Contains("model.bottom_units"));
  CHECK_THAT(
      error_of([] { parse("[[features.slot]]\nname = \"s\"\n[[features.slot]]\nname = \"s\"\n"); }),
      Contains("overridden twice"));
}

TEST_CASE("config: a missing file says the path and what to do", "[config]") {
  const std::string message = error_of([] { load_config("/no/such/dir/run.toml"); });
  CHECK_THAT(message, Contains("/no/such/dir/run.toml"));
  CHECK_THAT(message, Contains("not found"));
  CHECK_THAT(message, Contains("configs/demo_mmoe.toml"));
}

TEST_CASE("config: a TOML syntax error says file, line and column", "[config]") {
  const std::string message = error_of([] { parse("[data]\nseed = = 3\n"); });
  CHECK_THAT(message, Contains("cfg.toml:2:"));
  CHECK_THAT(message, Contains("TOML syntax error"));

  const auto path = std::filesystem::temp_directory_path() / "drgrad_config_test_syntax.toml";
  std::ofstream(path) << "[training]\nbatch_size = 3\n[training\n";
  const std::string from_file = error_of([&] { load_config(path.string()); });
  CHECK_THAT(from_file, Contains(path.string() + ":3:"));
  std::filesystem::remove(path);
}

TEST_CASE("config: load_config reads a file and applies overrides", "[config]") {
  const auto path = std::filesystem::temp_directory_path() / "drgrad_config_test_load.toml";
  std::ofstream(path) << kFullConfig;
  const Config config = load_config(path.string(), {"training.batch_size=64"});
  CHECK(config.training.batch_size == 64);
  CHECK(config.model.backbone == BackboneKind::kPle);
  const std::string message =
      error_of([&] { load_config(path.string(), {"training.batch_size=0"}); });
  CHECK_THAT(message, Contains("--set training.batch_size=0"));
  std::filesystem::remove(path);
}

TEST_CASE("config: --set overrides scalar, array and array-of-table keys", "[config]") {
  Config config = parse(kFullConfig);
  apply_override(config, "optimizer.learning_rate=0.01");
  apply_override(config, "model.tower_units=[16, 8]");
  apply_override(config, "model.activation=relu");        // bare word: a string
  apply_override(config, "output.run_dir=runs/a b");      // not TOML: taken as text
  apply_override(config, " training.device = \"cpu\" ");  // spaces around key and value
  apply_override(config, "tasks.0.loss_weight=2.5");
  apply_override(config, "tasks.1.name=2024");  // a number given to a string key stays text
  apply_override(config, "features.slot.0.pooling=sum");
  apply_override(config, "data.binary_labels=true");
  CHECK(config.optimizer.learning_rate == 0.01);
  CHECK(config.model.tower_units == std::vector<std::int64_t>{16, 8});
  CHECK(config.model.activation == kernels::Activation::kRelu);
  CHECK(config.output.run_dir == "runs/a b");
  CHECK(config.tasks[0].loss_weight == 2.5);
  CHECK(config.tasks[1].name == "2024");
  CHECK(config.features.slots[0].pooling == kernels::Pooling::kSum);
  CHECK(config.data.binary_labels);

  // Index == size appends a new entry; further ones fill it.
  apply_override(config, "tasks.2.name=third");
  apply_override(config, "tasks.2.type=regression");
  REQUIRE(config.tasks.size() == 3);
  CHECK(config.tasks[2].type == TaskType::kRegression);

  // A whole array of tables, and a whole section as an inline table.
  apply_override(config, "tasks=[{name = \"a\"}, {name = \"b\", loss_weight = 0.5}]");
  REQUIRE(config.tasks.size() == 2);
  CHECK(config.tasks[1].loss_weight == 0.5);
  apply_override(config, "model={backbone = \"shared_bottom\", bottom_units = [8]}");
  CHECK(config.model.backbone == BackboneKind::kSharedBottom);
  CHECK(config.model.bottom_units == std::vector<std::int64_t>{8});
}

TEST_CASE("config: bad --set overrides name the override", "[config]") {
  Config config;
  const std::string before = to_toml(config);
  auto override_error = [&config](const std::string& text) {
    return error_of([&] { apply_override(config, text); });
  };
  CHECK_THAT(override_error("training.batch_size"), Contains("--set training.batch_size"));
  CHECK_THAT(override_error("training.batch_size"), Contains("key=value"));
  CHECK_THAT(override_error("=3"), Contains("key before '=' is empty"));

  const std::string unknown = override_error("training.batchsize=3");
  CHECK_THAT(unknown, Contains("--set training.batchsize=3"));
  CHECK_THAT(unknown, Contains("did you mean 'training.batch_size'"));

  const std::string wrong_type = override_error("training.batch_size=abc");
  CHECK_THAT(wrong_type, Contains("--set training.batch_size=abc"));
  CHECK_THAT(wrong_type, Contains("expects an integer, found a string (\"abc\")"));

  const std::string range = override_error("training.batch_size=-4");
  CHECK_THAT(range, Contains("--set training.batch_size=-4"));
  CHECK_THAT(range, Contains("must be >= 1"));

  CHECK_THAT(override_error("model.backbone=moe"), Contains("shared_bottom, mmoe, ple"));
  CHECK_THAT(override_error("model.tower_units=32,16"), Contains("e.g. [1, 2]"));
  CHECK_THAT(override_error("tasks.3.name=x"), Contains("past the end of tasks"));
  CHECK_THAT(override_error("tasks.x.name=x"), Contains("0-based index"));
  CHECK_THAT(override_error("tasks.0.nme=x"), Contains("did you mean 'tasks.0.name'"));
  CHECK_THAT(override_error("model=3"), Contains("'model' is a table"));
  // A failed override leaves the configuration as it was.
  CHECK(to_toml(config) == before);
  CHECK(config.tasks.empty());
}

TEST_CASE("config: to_toml round-trips every value", "[config]") {
  Config config = parse(kFullConfig);
  apply_override(config, "optimizer.learning_rate=0.1");
  apply_override(config, "optimizer.epsilon=1e-8");
  apply_override(config, "data.train_files=[\"a \\\"quoted\\\" path.tfrecord\", 'b\\c']");
  apply_override(config, "output.run_dir=runs/tab\there");
  const std::string text = to_toml(config);
  const Config reloaded = parse(text);
  CHECK(to_toml(reloaded) == text);
  CHECK(reloaded.optimizer.learning_rate == 0.1);
  CHECK(reloaded.optimizer.epsilon == 1e-8);
  CHECK(reloaded.data.train_files == config.data.train_files);
  CHECK(reloaded.output.run_dir == config.output.run_dir);
  CHECK(reloaded.features.slots[0].vocabulary_size == 50);
  CHECK_FALSE(reloaded.features.slots[0].out_of_range.has_value());
  CHECK(reloaded.tasks.size() == 2);
  CHECK(reloaded.tasks[0].label == "label1");
  CHECK(reloaded.model.tower_units == config.model.tower_units);
  CHECK_THAT(text, Contains("[[tasks]]"));
  CHECK_THAT(text, Contains("# step size"));
}

TEST_CASE("config: resolve_tasks derives or checks tasks against the data", "[config]") {
  io::Schema schema;
  schema.labels = {"click", "dwell"};
  Config config;
  auto derived = resolve_tasks(config, schema);
  REQUIRE(derived.size() == 2);
  CHECK(derived[1].config.name == "dwell");
  CHECK(derived[1].label_index == 1);
  CHECK(derived[1].config.type == TaskType::kBinary);
  config.data.binary_labels = false;
  CHECK(resolve_tasks(config, schema)[0].config.type == TaskType::kRegression);

  config = parse("[[tasks]]\nname = \"watch\"\nlabel = \"dwell\"\n[[tasks]]\nname = \"click\"\n");
  auto given = resolve_tasks(config, schema);
  REQUIRE(given.size() == 2);
  CHECK(given[0].label_index == 1);
  CHECK(given[1].label_index == 0);

  config.tasks[1].label = "like";
  const std::string message = error_of([&] { resolve_tasks(config, schema); });
  CHECK_THAT(message, Contains("tasks.1"));
  CHECK_THAT(message, Contains("'like'"));
  CHECK_THAT(message, Contains("'click', 'dwell'"));
}

TEST_CASE("config: resolve_slots applies per-slot overrides", "[config]") {
  io::Schema schema;
  schema.sparse_slots = {{"user", 1000}, {"item", 0}};
  Config config = parse(
      "[features]\nembedding_dim = 4\n[[features.slot]]\nname = \"item\"\nvocabulary_size = "
      "77\npooling = \"mean\"\nembedding_dim = 12\n");
  const auto slots = resolve_slots(config, schema);
  REQUIRE(slots.size() == 2);
  CHECK(slots[0].name == "user");
  CHECK(slots[0].vocabulary_size == 1000);
  CHECK(slots[0].dim == 4);
  CHECK(slots[0].pooling == kernels::Pooling::kSum);
  CHECK(slots[1].vocabulary_size == 77);
  CHECK(slots[1].dim == 12);
  CHECK(slots[1].pooling == kernels::Pooling::kMean);

  config.features.slots.clear();
  CHECK_THAT(error_of([&] { resolve_slots(config, schema); }), Contains("'item' has no known"));
  config.features.slots.push_back({"author", 5, {}, {}, {}});
  CHECK_THAT(error_of([&] { resolve_slots(config, schema); }), Contains("'author'"));
}

TEST_CASE("config: generated data follows [data] with separate train and eval streams",
          "[config]") {
  Config config = parse(
      "[data]\ntrain_samples = 200\neval_samples = 50\ninput_dim = 8\nsparse_slots = 2\n"
      "sparse_vocabulary = 10\n");
  const auto train = generate_configured_data(config.data, DataSplit::kTrain);
  const auto eval = generate_configured_data(config.data, DataSplit::kEval);
  REQUIRE_NOTHROW(train.batch.validate(train.schema));
  REQUIRE_NOTHROW(eval.batch.validate(eval.schema));
  CHECK(train.batch.size == 200);
  CHECK(eval.batch.size == 50);
  CHECK(train.schema.fingerprint() == eval.schema.fingerprint());
  CHECK(train.schema.num_dense() == 8);
  CHECK(train.schema.sparse_slots[1].vocabulary_size == 10);
  CHECK(std::vector<float>(train.batch.dense.begin(), train.batch.dense.begin() + 8) !=
        std::vector<float>(eval.batch.dense.begin(), eval.batch.dense.begin() + 8));

  config.data.generator = GeneratorKind::kDrgradSynthetic;
  const auto synthetic = generate_configured_data(config.data, DataSplit::kTrain);
  CHECK(synthetic.schema.num_sparse() == 6);
  CHECK(synthetic.schema.sparse_slots[0].vocabulary_size == 10);

  config.data.source = DataSource::kFiles;
  CHECK_THROWS_AS(generate_configured_data(config.data, DataSplit::kTrain), ConfigError);
}

TEST_CASE("config: every example in configs/ loads", "[config]") {
  const std::filesystem::path directory = std::filesystem::path(DRGRAD_SOURCE_DIR) / "configs";
  int loaded = 0;
  for (const auto& entry : std::filesystem::directory_iterator(directory)) {
    if (entry.path().extension() != ".toml") continue;
    // Data description files (CSV column specs, Example mappings) are not run configs.
    if (entry.path().stem().string().ends_with("_schema")) continue;
    INFO("config " << entry.path());
    const Config config = load_config(entry.path().string());
    if (config.data.source == DataSource::kFiles) CHECK_FALSE(config.data.train_files.empty());
    ++loaded;
  }
  CHECK(loaded >= 4);
}

TEST_CASE("config: docs/config.md documents every key", "[config]") {
  std::ifstream file(std::filesystem::path(DRGRAD_SOURCE_DIR) / "docs" / "config.md");
  REQUIRE(file);
  std::stringstream contents;
  contents << file.rdbuf();
  const std::string docs = contents.str();
  for (const std::string& key : config_keys()) {
    INFO("key " << key);
    CHECK_THAT(docs, Contains("`" + key + "`"));
  }
  // The reference table in the docs is the generated one, row for row.
  std::istringstream rows(config_reference_markdown());
  for (std::string row; std::getline(rows, row);) {
    INFO("row " << row);
    CHECK_THAT(docs, Contains(row));
  }
}

TEST_CASE("config: strategies from the paper's table that are not supported yet say so",
          "[config]") {
  for (const char* name : {"snr", "ac_mmoe", "nash_mtl", "adatask", "igbv2"}) {
    CHECK_THROWS_WITH(config_from_toml_string(std::string("[strategy]\nname = \"") + name + "\"\n",
                                              "strategy.toml"),
                      Catch::Contains("not yet supported") && Catch::Contains(name));
  }
  CHECK_THROWS_WITH(config_from_toml_string("[strategy]\nname = \"drgrad\"\n", "s.toml"),
                    Catch::Contains("model.split_towers"));
  const Config ok = config_from_toml_string(
      "[model]\nsplit_towers = true\n[strategy]\nname = \"drgrad\"\nrouter_form = "
      "\"paired\"\nrouted_parameters = \"first_layer\"\n",
      "s.toml");
  CHECK(ok.strategy.router_form == RouterForm::kPaired);
  CHECK(ok.strategy.routed_parameters == RoutedParameters::kFirstLayer);
}
