// End-to-end training throughput on a GPU: the Census-shaped MMoE, Split-MMoE and DRGrad models
// (the DRGrad step's cost over plain MMoE) and an industrial-shaped model (26 slots of dimension
// 16, 4 tasks, 8 experts of [512, 256], batch 8192), each trained with Trainer::train_step on
// batches generated before the clock starts, eagerly and (--variants) with the device embedding
// plan and with the step replayed as a CUDA graph. Warm-up, several timed runs, the median; the
// peer is bench/peers/torch_mtl_gpu.py, run beside it by bench/run_gpu_bench.sh.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/bench_dataset.h"
#include "bench/bench_flags.h"
#include "bench/gpu_bench_support.h"
#include "engine/core/random.h"
#include "engine/layers/embedding.h"
#include "engine/multitask/drgrad_strategy.h"
#include "engine/train/trainer.h"
#include "io/data/batch.h"

namespace {

namespace bench = drgrad::bench;

using drgrad::bench::census_shape;
using drgrad::bench::Dataset;
using drgrad::bench::DataShape;
using drgrad::bench::industrial_shape;
using drgrad::bench::json_string;
using drgrad::bench::JsonLines;
using drgrad::bench::make_data;
using drgrad::bench::median;
using drgrad::bench::write_dataset;

// One benchmark row: a model on a data shape.
struct ModelCase {
  std::string name;  // census_mmoe, census_split_mmoe, census_drgrad, industrial_...
  std::string shape;
  std::int64_t batch = 0;
  std::int64_t embedding_dim = 0;
  std::int64_t experts = 0;
  std::vector<std::int64_t> expert_units;
  std::vector<std::int64_t> tower_units;
  bool split = false;   // the primary task (task 0) split into T' and T''
  bool drgrad = false;  // DRGrad's router and updater after every backward pass
};

// How a model's step runs (--variants). kEager: the trainer's defaults (the host embedding plan,
// no graph); kDevicePlan: eager steps with model.embedding_backward = device_plan; kGraph: the
// device plan with training.cuda_graph, each batch shape's step captured once and replayed (the
// graph needs the device plan, so kDevicePlan is the eager step it is set against).
enum class Variant { kEager, kDevicePlan, kGraph };

const char* variant_name(Variant variant) {
  switch (variant) {
    case Variant::kEager:
      return "eager";
    case Variant::kDevicePlan:
      return "device_plan";
    case Variant::kGraph:
      return "graph";
  }
  return "?";
}

// A row's name: the model's for eager steps, <model>+device_plan and <model>+graph otherwise.
std::string row_name(const std::string& model, Variant variant) {
  return variant == Variant::kEager ? model : model + "+" + variant_name(variant);
}

struct BenchOptions {
  std::string device = "cuda";
  std::vector<std::string> models{"census_mmoe", "census_split_mmoe", "census_drgrad",
                                  "industrial_mmoe", "industrial_drgrad"};
  std::vector<Variant> variants{Variant::kEager};
  std::int64_t census_batch = 512;
  std::int64_t industrial_batch = 8192;
  std::int64_t industrial_vocabulary = 10000;
  std::int64_t steps = 100;
  std::int64_t warmup = 20;
  int runs = 5;
  std::int64_t dataset_batches = 8;
  std::uint64_t seed = 1;
  std::string json_path;
  std::string write_data_dir;
};

const char* kUsage =
    "usage: gpu_train_bench [options]\n"
    "  --device cuda|cuda:N|cpu  where the models train (cuda; without a device: SKIPPED, exit 0)\n"
    "  --models A,B,...          of census_mmoe, census_split_mmoe, census_drgrad,\n"
    "                            industrial_mmoe, industrial_drgrad (default: all five)\n"
    "  --variants A,B,...        how the step runs, one row per model and variant: eager (the\n"
    "                            host embedding plan, no graph), device_plan (eager steps with\n"
    "                            model.embedding_backward = device_plan), graph (device_plan and\n"
    "                            training.cuda_graph; CUDA only, --warmup 2 or more) (eager)\n"
    "  --census-batch N          (512)\n"
    "  --industrial-batch N      (8192)\n"
    "  --industrial-vocabulary V rows per industrial slot (10000)\n"
    "  --steps N                 steps per timed run (100)\n"
    "  --warmup N                untimed steps first (20)\n"
    "  --runs R                  timed runs; the median is reported (5)\n"
    "  --dataset-batches N       distinct pre-built batches per model, cycled (8)\n"
    "  --seed S                  data and initialisation seed (1)\n"
    "  --json FILE               append one JSON line per row (and the overheads, speedups)\n"
    "  --write-data DIR          write census.bin and industrial.bin there for the peer\n";

BenchOptions parse_arguments(int argc, char** argv) {
  BenchOptions options;
  bench::parse_flags(argc, argv, kUsage, [&](const std::string& flag, const std::string& value) {
    if (flag == "--device") {
      options.device = value;
    } else if (flag == "--models") {
      options.models = bench::split_list(value);
    } else if (flag == "--variants") {
      options.variants.clear();
      for (const std::string& name : bench::split_list(value)) {
        if (name == "eager") {
          options.variants.push_back(Variant::kEager);
        } else if (name == "device_plan") {
          options.variants.push_back(Variant::kDevicePlan);
        } else if (name == "graph") {
          options.variants.push_back(Variant::kGraph);
        } else {
          throw std::invalid_argument("unknown variant '" + name + "'\n" + kUsage);
        }
      }
    } else if (flag == "--census-batch") {
      options.census_batch = std::stoll(value);
    } else if (flag == "--industrial-batch") {
      options.industrial_batch = std::stoll(value);
    } else if (flag == "--industrial-vocabulary") {
      options.industrial_vocabulary = std::stoll(value);
    } else if (flag == "--steps") {
      options.steps = std::stoll(value);
    } else if (flag == "--warmup") {
      options.warmup = std::stoll(value);
    } else if (flag == "--runs") {
      options.runs = std::stoi(value);
    } else if (flag == "--dataset-batches") {
      options.dataset_batches = std::stoll(value);
    } else if (flag == "--seed") {
      options.seed = std::stoull(value);
    } else if (flag == "--json") {
      options.json_path = value;
    } else if (flag == "--write-data") {
      options.write_data_dir = value;
    } else {
      return false;
    }
    return true;
  });
  if (options.census_batch <= 0 || options.industrial_batch <= 0 ||
      options.industrial_vocabulary <= 0 || options.steps <= 0 || options.warmup < 0 ||
      options.runs <= 0 || options.dataset_batches <= 0 || options.models.empty() ||
      options.variants.empty()) {
    throw std::invalid_argument(
        "batches, --industrial-vocabulary, --steps, --runs and --dataset-batches must be "
        "positive, --warmup not negative, --models and --variants not empty");
  }
  // The trainer captures a batch shape's step on its second step of that shape: with fewer
  // warm-up steps the capture would land in the timed runs.
  const bool graph = std::find(options.variants.begin(), options.variants.end(), Variant::kGraph) !=
                     options.variants.end();
  if (graph && options.warmup < 2) {
    throw std::invalid_argument(
        "--variants graph needs --warmup 2 or more: the trainer captures the step on the second "
        "step of a batch shape, which must happen before the clock starts");
  }
  return options;
}

ModelCase model_case(const std::string& name, const BenchOptions& options) {
  ModelCase c;
  c.name = name;
  if (name.rfind("census_", 0) == 0) {
    // The MMoE-sized Census models of docs/experiments.md.
    c.shape = "census";
    c.batch = options.census_batch;
    c.embedding_dim = 4;
    c.experts = 8;
    c.expert_units = {64};
    c.tower_units = {32};
  } else if (name.rfind("industrial_", 0) == 0) {
    c.shape = "industrial";
    c.batch = options.industrial_batch;
    c.embedding_dim = 16;
    c.experts = 8;
    c.expert_units = {512, 256};
    c.tower_units = {128};
  } else {
    throw std::invalid_argument("unknown model '" + name + "'\n" + kUsage);
  }
  const std::string backbone = name.substr(name.find('_') + 1);
  if (backbone == "mmoe") {
  } else if (backbone == "split_mmoe") {
    c.split = true;
  } else if (backbone == "drgrad") {
    c.split = c.drgrad = true;
  } else {
    throw std::invalid_argument("unknown model '" + name + "'\n" + kUsage);
  }
  return c;
}

std::string join(const std::vector<std::int64_t>& values) {
  std::string text;
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) text += ',';
    text += std::to_string(values[i]);
  }
  return text;
}

// Waits for all work queued on the device, so that a host clock read after it sees the work done.
void synchronize(const drgrad::kernels::Device& device) {
#if defined(DRGRAD_WITH_CUDA)
  if (device.is_cuda()) DRGRAD_CUDA_CHECK(cudaDeviceSynchronize());
#else
  (void)device;
#endif
}

// Bytes of device memory in use (all processes) once a model has trained, or 0 on the CPU.
std::size_t device_memory_in_use(const drgrad::kernels::Device& device) {
#if defined(DRGRAD_WITH_CUDA)
  if (device.is_cuda()) {
    std::size_t free_bytes = 0, total_bytes = 0;
    DRGRAD_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    return total_bytes - free_bytes;
  }
#else
  (void)device;
#endif
  return 0;
}

// Floating-point operations of the matrix products of one training step per sample: every
// linear layer (experts, gates, towers and their logits) costs 2 in out forward and twice that
// backward (input and weight gradients; the first layers need input gradients too, since the
// embeddings train), so 6 in out. Element-wise work, embeddings and the optimizer are left out:
// this is the part that the matrix-product ceiling bounds.
double matmul_flops_per_sample(const drgrad::engine::ModelSpec& spec, std::int64_t input_width) {
  auto mlp = [](std::int64_t in, const std::vector<std::int64_t>& units, std::int64_t out) {
    double flops = 0;
    for (const std::int64_t width : units) {
      flops += 6.0 * static_cast<double>(in) * static_cast<double>(width);
      in = width;
    }
    return out > 0 ? flops + 6.0 * static_cast<double>(in) * static_cast<double>(out) : flops;
  };
  const auto tasks = static_cast<std::int64_t>(spec.tasks.size());
  const std::int64_t gates = tasks + (spec.split.enabled ? 1 : 0);
  const std::int64_t towers = tasks + (spec.split.enabled ? 1 : 0);
  const std::int64_t expert_out = spec.expert_units.back();
  return static_cast<double>(spec.num_experts) * mlp(input_width, spec.expert_units, 0) +
         static_cast<double>(gates) * 6.0 * static_cast<double>(input_width) *
             static_cast<double>(spec.num_experts) +
         static_cast<double>(towers) * mlp(expert_out, spec.tower_units, 1);
}

struct CaseResult {
  std::string name;
  double median_rate = 0;
  bool passed = false;
};

// Trains model `c` with its steps run as `variant` and prints (and writes to JSON) its row, named
// row_name(c.name, variant); `name_width` is the table's first column. Throws when the row cannot
// run (among others the trainer's TrainingError for a graph on the CPU, and a graph variant whose
// warm-up captured no step).
CaseResult run_case(const ModelCase& c, Variant variant, const Dataset& data,
                    const BenchOptions& options, JsonLines& json, const std::string& device_json,
                    int name_width) {
  namespace engine = drgrad::engine;
  const std::string row = row_name(c.name, variant);
  const engine::EmbeddingBackward backward = variant == Variant::kEager
                                                 ? engine::EmbeddingBackward::kHostPlan
                                                 : engine::EmbeddingBackward::kDevicePlan;
  const char* backward_name = variant == Variant::kEager ? "host_plan" : "device_plan";
  engine::ModelSpec spec;
  spec.backbone = engine::BackboneKind::kMmoe;
  spec.num_dense = static_cast<std::int64_t>(data.schema.num_dense());
  for (const auto& slot_schema : data.schema.sparse_slots) {
    engine::EmbeddingSlotSpec slot;
    slot.name = slot_schema.name;
    slot.vocabulary_size = slot_schema.vocabulary_size;
    slot.dim = c.embedding_dim;
    slot.backward = backward;
    spec.slots.push_back(slot);
  }
  for (std::size_t t = 0; t < data.schema.labels.size(); ++t) {
    spec.tasks.push_back({data.schema.labels[t], static_cast<int>(t)});
  }
  spec.num_experts = c.experts;
  spec.expert_units = c.expert_units;
  spec.tower_units = c.tower_units;
  if (c.split) {
    spec.split.enabled = true;
    spec.split.primary_task = 0;
    spec.split.aux_read_shared = true;
  }

  engine::OptimizerSpec optimizer;  // Adam, learning rate 1e-3
  engine::TrainingOptions training;
  training.batch_size = c.batch;
  training.seed = options.seed;
  training.device = drgrad::kernels::parse_device(options.device);
  training.show_progress = false;
  training.save_checkpoints = false;
  training.cuda_graph = variant == Variant::kGraph;

  std::vector<drgrad::io::Batch> batches;
  for (std::int64_t b = 0; b < options.dataset_batches; ++b) {
    std::vector<std::int64_t> rows(static_cast<std::size_t>(c.batch));
    for (std::int64_t i = 0; i < c.batch; ++i) rows[i] = b * c.batch + i;
    batches.push_back(drgrad::io::gather_rows(data.all, rows));
  }
  auto stream =
      std::make_unique<engine::InMemoryBatchStream>(data.schema, data.all, c.batch, false, 1);
  engine::Trainer trainer(spec, optimizer, training, std::move(stream), nullptr);
  if (c.drgrad) {
    engine::DrgradSettings settings;  // paper form, all tower parameters, gamma 1, rho 1
    settings.telemetry_every = 0;
    trainer.set_strategy(std::make_unique<engine::DrgradStrategy>(settings, trainer.model()));
  }
  const std::int64_t parameters = trainer.model().parameters().total_elements();
  const std::int64_t input_width =
      spec.num_dense + c.embedding_dim * static_cast<std::int64_t>(spec.slots.size());
  std::printf(
      "# model %s: input width %lld (%zu slots x %lld + %lld dense), MMoE %lld experts x [%s], "
      "towers [%s] + logit, relu, %zu tasks%s; %lld parameters; Adam lr %g; batch %lld; "
      "embedding backward %s, %s\n",
      row.c_str(), static_cast<long long>(input_width), spec.slots.size(),
      static_cast<long long>(c.embedding_dim), static_cast<long long>(spec.num_dense),
      static_cast<long long>(c.experts), join(c.expert_units).c_str(), join(c.tower_units).c_str(),
      spec.tasks.size(),
      c.drgrad  ? ", task 0 split (T', T''), DRGrad router (paper, all tower parameters)"
      : c.split ? ", task 0 split (T', T''), no router"
                : "",
      static_cast<long long>(parameters), optimizer.learning_rate, static_cast<long long>(c.batch),
      backward_name,
      training.cuda_graph ? "each batch shape's step captured once as a CUDA graph and replayed"
                          : "eager steps");

  std::size_t next_batch = 0;
  std::vector<double> step_losses;
  auto one_step = [&] {
    const std::vector<double> losses = trainer.train_step(batches[next_batch]);
    next_batch = (next_batch + 1) % batches.size();
    double total = 0;
    for (const double loss : losses) total += loss;
    step_losses.push_back(total);
  };
  for (std::int64_t i = 0; i < options.warmup; ++i) one_step();
  synchronize(training.device);
  // A graph row whose warm-up captured nothing would time eager steps under the graph's name.
  const std::size_t captured = trainer.captured_step_graphs();
  if (training.cuda_graph) {
    if (captured < 1) {
      throw std::runtime_error(
          row + ": training.cuda_graph is on but the trainer captured no step as a CUDA graph in " +
          std::to_string(options.warmup) +
          " warm-up steps, so the timed steps would not replay one; the row is not measured");
    }
    std::printf(
        "# %s: %zu batch shape(s) captured as a CUDA graph in the warm-up; the timed "
        "steps replay it\n",
        row.c_str(), captured);
  }

  std::vector<double> rates;
  for (int r = 0; r < options.runs; ++r) {
    synchronize(training.device);
    const auto start = std::chrono::steady_clock::now();
    for (std::int64_t i = 0; i < options.steps; ++i) one_step();
    synchronize(training.device);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    rates.push_back(static_cast<double>(options.steps * c.batch) / seconds);
    std::printf("%-*s %4d %8lld %10.4f %14.1f %10.3f\n", name_width, row.c_str(), r + 1,
                static_cast<long long>(options.steps), seconds, rates.back(),
                1e3 * seconds / static_cast<double>(options.steps));
  }
  const double median_rate = median(rates);

  // Correctness in the same run: every loss finite (train_step throws otherwise) and the mean
  // summed loss of the last tenth of the steps below that of the first tenth.
  const std::size_t window = std::max<std::size_t>(1, step_losses.size() / 10);
  double first = 0, last = 0;
  for (std::size_t i = 0; i < window; ++i) {
    first += step_losses[i] / static_cast<double>(window);
    last += step_losses[step_losses.size() - 1 - i] / static_cast<double>(window);
  }
  const bool passed = std::isfinite(first) && std::isfinite(last) && last < first;
  const std::size_t memory = device_memory_in_use(training.device);
  const double flops_per_step =
      matmul_flops_per_sample(spec, input_width) * static_cast<double>(c.batch);
  const double achieved_tflops = flops_per_step * median_rate / static_cast<double>(c.batch) / 1e12;
  std::printf("%-*s %-4s %8s %10s %14.1f %10.3f\n", name_width, row.c_str(), "med", "", "",
              median_rate, 1e3 * static_cast<double>(c.batch) / median_rate);
  std::printf(
      "# %s check: summed task loss, mean of first %zu steps %.4f -> last %zu %.4f: %s%s\n",
      row.c_str(), window, first, window, last,
      passed ? "falls, OK" : "DOES NOT FALL (training is broken)",
      memory ? (", device memory in use " + std::to_string(memory >> 20) + " MiB").c_str() : "");
  std::printf(
      "# %s: matrix products %.3g GFLOP per step (6 in out per linear layer and sample), "
      "%.2f TFLOP/s at the median\n",
      row.c_str(), flops_per_step / 1e9, achieved_tflops);

  std::ostringstream fields;
  fields << "\"benchmark\": \"gpu_train\", \"implementation\": \"drgrad\", \"mode\": \"drgrad\", "
         << "\"model\": " << json_string(row) << ", \"base_model\": " << json_string(c.name)
         << ", \"variant\": " << json_string(variant_name(variant))
         << ", \"date\": " << json_string(drgrad::bench::utc_now())
         << ", \"device\": " << json_string(training.device.to_string()) << ", " << device_json
         << ", \"config\": {\"shape\": " << json_string(c.shape) << ", \"batch\": " << c.batch
         << ", \"slots\": " << spec.slots.size() << ", \"dense\": " << spec.num_dense
         << ", \"tasks\": " << spec.tasks.size() << ", \"embedding_dim\": " << c.embedding_dim
         << ", \"experts\": " << c.experts << ", \"expert_units\": [" << join(c.expert_units)
         << "], \"tower_units\": [" << join(c.tower_units)
         << "], \"split\": " << (c.split ? "true" : "false")
         << ", \"drgrad\": " << (c.drgrad ? "true" : "false")
         << ", \"embedding_backward\": " << json_string(backward_name)
         << ", \"cuda_graph\": " << (training.cuda_graph ? "true" : "false")
         << ", \"parameters\": " << parameters << ", \"warmup\": " << options.warmup
         << ", \"runs\": " << options.runs << ", \"steps\": " << options.steps
         << "}, \"samples_per_second\": [";
  for (std::size_t r = 0; r < rates.size(); ++r) fields << (r ? ", " : "") << rates[r];
  fields << "], \"median_samples_per_second\": " << median_rate
         << ", \"matmul_flops_per_step\": " << flops_per_step
         << ", \"matmul_tflops\": " << achieved_tflops
         << ", \"device_memory_in_use_bytes\": " << memory
         << ", \"captured_step_graphs\": " << captured << ", \"check\": {\"first_loss\": " << first
         << ", \"last_loss\": " << last << ", \"passed\": " << (passed ? "true" : "false") << "}";
  json.write(fields.str());
  return {row, median_rate, passed};
}

int run(const BenchOptions& options) {
  const drgrad::kernels::Device device = drgrad::kernels::parse_device(options.device);
  if (drgrad::bench::skip_without_device(device, "gpu_train_bench")) return 0;

  std::vector<ModelCase> cases;
  for (const auto& name : options.models) cases.push_back(model_case(name, options));

  std::printf("# gpu_train_bench (drgrad)  %s\n", drgrad::bench::utc_now().c_str());
  std::string device_json = "\"gpu\": null";
#if defined(DRGRAD_WITH_CUDA)
  if (device.is_cuda()) {
    const auto description = drgrad::bench::describe_device(device.index);
    description.print(device.index);
    device_json = description.json();
  }
#endif
  std::printf("# build: %s; device %s\n", drgrad::bench::build_flags().c_str(),
              device.to_string().c_str());
  std::printf(
      "# method: %lld warm-up steps, then %d runs x %lld steps of Trainer::train_step on "
      "%lld pre-built batches (host io::Batch, copied to the device by the step), wall clock "
      "between device synchronisations; median of the runs\n",
      static_cast<long long>(options.warmup), options.runs, static_cast<long long>(options.steps),
      static_cast<long long>(options.dataset_batches));
  std::string variants;
  for (const Variant variant : options.variants) {
    variants += (variants.empty() ? "" : ", ") + std::string(variant_name(variant));
  }
  std::printf("# variants: %s; all rows of one variant before the next\n", variants.c_str());

  JsonLines json(options.json_path);
  const DataShape census = census_shape();
  const DataShape industrial = industrial_shape(options.industrial_vocabulary);
  auto batch_of = [&](const std::string& shape) {
    return shape == "census" ? options.census_batch : options.industrial_batch;
  };
  auto needs = [&](const std::string& shape) {
    if (!options.write_data_dir.empty()) return true;
    for (const auto& c : cases) {
      if (c.shape == shape) return true;
    }
    return false;
  };
  // One dataset per shape, shared by its models (so MMoE and DRGrad see the same batches).
  Dataset census_data, industrial_data;
  for (const DataShape* shape : {&census, &industrial}) {
    if (!needs(shape->name)) continue;
    Dataset& data = shape == &census ? census_data : industrial_data;
    data = make_data(*shape, batch_of(shape->name) * options.dataset_batches, options.seed);
    std::printf(
        "# data %s: %zu slots (vocabularies %s), %lld dense, %zu binary tasks, %lld "
        "samples, generated before timing\n",
        shape->name.c_str(), shape->vocabularies.size(),
        shape->name == "census" ? "2 to 52, Census-Income's"
                                : std::to_string(shape->vocabularies[0]).c_str(),
        static_cast<long long>(shape->dense), shape->labels.size(),
        static_cast<long long>(data.all.size));
    if (!options.write_data_dir.empty()) {
      const std::string path = options.write_data_dir + "/" + shape->name + ".bin";
      write_dataset(data, path);
      std::printf("# data %s written to %s\n", shape->name.c_str(), path.c_str());
    }
  }

  int name_width = 20;
  for (const auto& c : cases) {
    for (const Variant variant : options.variants) {
      name_width = std::max(name_width, static_cast<int>(row_name(c.name, variant).size()));
    }
  }
  std::printf("%-*s %4s %8s %10s %14s %10s\n", name_width, "model", "run", "steps", "seconds",
              "samples/s", "ms/step");
  // Variant by variant, so that the eager rows (the peer's comparison and the overhead goal) are
  // measured first and a failing or slow graph row, which is caught here, cannot cost them.
  std::vector<CaseResult> results;
  int failed_rows = 0;
  for (const Variant variant : options.variants) {
    for (const auto& c : cases) {
      try {
        results.push_back(run_case(c, variant, c.shape == "census" ? census_data : industrial_data,
                                   options, json, device_json, name_width));
      } catch (const std::exception& error) {
        ++failed_rows;
        std::fprintf(stderr, "gpu_train_bench: row %s FAILED: %s\n",
                     row_name(c.name, variant).c_str(), error.what());
      }
    }
  }

  // The DRGrad step against the plain MMoE step of the same shape (goal: at most 5% slower).
  auto rate_of = [&](const std::string& name) {
    for (const auto& r : results) {
      if (r.name == name) return r.median_rate;
    }
    return 0.0;
  };
  // From the eager rows as always, and again from the graph rows where both were measured.
  for (const Variant variant : {Variant::kEager, Variant::kGraph}) {
    for (const std::string shape : {"census", "industrial"}) {
      const double mmoe = rate_of(row_name(shape + "_mmoe", variant));
      const double drgrad = rate_of(row_name(shape + "_drgrad", variant));
      const double split = rate_of(row_name(shape + "_split_mmoe", variant));
      if (mmoe <= 0 || drgrad <= 0) continue;
      const double overhead = mmoe / drgrad - 1.0;  // extra time per step, relative
      std::printf("# %s%s: DRGrad step costs %+.1f%% against MMoE (goal <= +5%%)%s", shape.c_str(),
                  variant == Variant::kGraph ? " with CUDA graphs" : "", 100 * overhead,
                  overhead <= 0.05 ? ", met" : ", NOT met");
      if (split > 0) {
        std::printf("; against Split-MMoE (the same towers without the router) %+.1f%%",
                    100 * (split / drgrad - 1.0));
      }
      std::printf("\n");
      std::ostringstream fields;
      fields << "\"benchmark\": \"gpu_train_overhead\", \"shape\": " << json_string(shape)
             << ", \"variant\": " << json_string(variant_name(variant))
             << ", \"device\": " << json_string(device.to_string())
             << ", \"mmoe_samples_per_second\": " << mmoe
             << ", \"drgrad_samples_per_second\": " << drgrad
             << ", \"drgrad_step_overhead\": " << overhead
             << ", \"goal\": 0.05, \"met\": " << (overhead <= 0.05 ? "true" : "false");
      if (split > 0) fields << ", \"split_mmoe_samples_per_second\": " << split;
      json.write(fields.str());
    }
  }

  // What the CUDA graph gains: its samples/s over those of the eager step with the same (device)
  // embedding plan, which isolates the graph, and over the default eager step.
  for (const auto& c : cases) {
    const double graph = rate_of(row_name(c.name, Variant::kGraph));
    const double device_plan = rate_of(row_name(c.name, Variant::kDevicePlan));
    const double eager = rate_of(row_name(c.name, Variant::kEager));
    if (graph <= 0 || (device_plan <= 0 && eager <= 0)) continue;
    std::printf("# %s: CUDA graph step", c.name.c_str());
    if (device_plan > 0) std::printf(" %.2fx the device_plan eager step", graph / device_plan);
    if (eager > 0) {
      std::printf(device_plan > 0 ? " (%.2fx the eager step)" : " %.2fx the eager step",
                  graph / eager);
    }
    std::printf("; samples/s ratios, above 1 the graph is faster\n");
    std::ostringstream fields;
    fields << "\"benchmark\": \"gpu_train_graph_speedup\", \"model\": " << json_string(c.name)
           << ", \"device\": " << json_string(device.to_string())
           << ", \"graph_samples_per_second\": " << graph;
    if (device_plan > 0) {
      fields << ", \"device_plan_samples_per_second\": " << device_plan
             << ", \"graph_speedup_over_device_plan\": " << graph / device_plan;
    }
    if (eager > 0) {
      fields << ", \"eager_samples_per_second\": " << eager
             << ", \"graph_speedup_over_eager\": " << graph / eager;
    }
    json.write(fields.str());
  }

  // 2: a row could not run (its error is above); 1: a row's loss check failed.
  if (failed_rows > 0) {
    std::printf("# %d row(s) FAILED to run; their errors are on stderr\n", failed_rows);
    return 2;
  }
  bool all_passed = true;
  for (const auto& r : results) all_passed = all_passed && r.passed;
  return all_passed ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Whole lines reach the log even when a timeout kills the run (stdout is a pipe or file there).
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    return run(parse_arguments(argc, argv));
  } catch (const std::exception& error) {
    std::fprintf(stderr, "gpu_train_bench: %s\n", error.what());
    return 2;
  }
}
