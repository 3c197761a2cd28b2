// Training throughput (samples/s) of a multi-task model on a Census-shaped input: 32 categorical
// slots with the Census-Income vocabulary sizes, 7 dense features, 2 binary tasks. Warm-up, then
// several timed runs of Trainer::train_step on pre-built batches; prints the median and peak RSS.
#include <cblas.h>
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_dataset.h"
#include "bench/bench_flags.h"
#include "engine/core/random.h"
#include "engine/train/trainer.h"
#include "io/data/batch.h"
#include "kernels/dense/gemm.h"

namespace {

namespace bench = drgrad::bench;

using drgrad::engine::BackboneKind;

constexpr std::int64_t kCensusDense = 7;
constexpr int kNumTasks = 2;

struct BenchOptions {
  std::string backbone = "mmoe";
  std::int64_t batch = 512;
  std::int64_t steps = 100;  // per timed run
  std::int64_t warmup = 30;
  int runs = 5;
  int threads = drgrad::engine::TrainingOptions{}.cpu_threads;  // BLAS threads; 0: all cores
  std::string device = "cpu";
  std::string json_path;
  std::string write_data_path;
  std::int64_t embedding_dim = 4;
  std::int64_t num_experts = 8;
  std::vector<std::int64_t> expert_units{64};
  std::vector<std::int64_t> tower_units{32};
  std::int64_t dataset_batches = 64;  // distinct batches cycled through
  std::uint64_t seed = 1;
};

const char* kUsage =
    "usage: train_throughput_bench [options]\n"
    "  --backbone mmoe|shared_bottom|ple  (default mmoe)\n"
    "  --batch N            samples per step (512)\n"
    "  --steps N            steps per timed run (100)\n"
    "  --warmup N           untimed steps first (30)\n"
    "  --runs R             timed runs; the median is reported (5)\n"
    "  --threads T          BLAS threads, TrainingOptions::cpu_threads (default 1; 0: all cores)\n"
    "  --device cpu|cuda    where the model trains (cpu)\n"
    "  --embedding-dim D    per slot (4)\n"
    "  --experts E          MMoE experts (8)\n"
    "  --expert-units A,B   expert (and shared-bottom) layer widths (64)\n"
    "  --tower-units A,B    tower hidden widths (32)\n"
    "  --dataset-batches N  distinct pre-built batches, cycled (64)\n"
    "  --seed S             data and initialisation seed (1)\n"
    "  --json FILE          also write the results as JSON\n"
    "  --write-data FILE    write the generated dataset for a peer benchmark (bench/peers/)\n";

std::vector<std::int64_t> parse_units(const std::string& text) {
  std::vector<std::int64_t> units = drgrad::bench::integer_list(text);
  if (units.empty()) throw std::invalid_argument("empty unit list '" + text + "'");
  return units;
}

std::string join_units(const std::vector<std::int64_t>& units) {
  std::string text;
  for (std::size_t i = 0; i < units.size(); ++i) {
    if (i) text += ',';
    text += std::to_string(units[i]);
  }
  return text;
}

BenchOptions parse_arguments(int argc, char** argv) {
  BenchOptions options;
  bench::parse_flags(argc, argv, kUsage, [&](const std::string& flag, const std::string& value) {
    if (flag == "--backbone") {
      options.backbone = value;
    } else if (flag == "--batch") {
      options.batch = std::stoll(value);
    } else if (flag == "--steps") {
      options.steps = std::stoll(value);
    } else if (flag == "--warmup") {
      options.warmup = std::stoll(value);
    } else if (flag == "--runs") {
      options.runs = std::stoi(value);
    } else if (flag == "--threads") {
      options.threads = std::stoi(value);
    } else if (flag == "--device") {
      options.device = value;
    } else if (flag == "--embedding-dim") {
      options.embedding_dim = std::stoll(value);
    } else if (flag == "--experts") {
      options.num_experts = std::stoll(value);
    } else if (flag == "--expert-units") {
      options.expert_units = parse_units(value);
    } else if (flag == "--tower-units") {
      options.tower_units = parse_units(value);
    } else if (flag == "--dataset-batches") {
      options.dataset_batches = std::stoll(value);
    } else if (flag == "--seed") {
      options.seed = std::stoull(value);
    } else if (flag == "--json") {
      options.json_path = value;
    } else if (flag == "--write-data") {
      options.write_data_path = value;
    } else {
      return false;
    }
    return true;
  });
  if (options.batch <= 0 || options.steps <= 0 || options.warmup < 0 || options.runs <= 0 ||
      options.dataset_batches <= 0 || options.threads < 0) {
    throw std::invalid_argument(
        "--batch, --steps, --runs and --dataset-batches must be positive, --warmup and "
        "--threads not negative");
  }
  return options;
}

std::string first_cpuinfo_value(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

// Peak resident set size of this process in MiB (VmHWM), or -1 where /proc is missing.
double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

// The 1, 5 and 15 minute load averages: other work on the machine skews the timings.
std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  if (!(in >> one >> five >> fifteen)) return "unknown";
  return one + " " + five + " " + fifteen;
}

// CPU time of every thread of this process: unlike the wall clock, it does not grow while the
// process waits for a core that other work holds (it still counts spinning threads).
double process_cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

std::string utc_now() {
  const std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return text;
}

std::string compiler_name() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("gcc ") + __VERSION__;
#else
  return "unknown";
#endif
}

std::string build_flags() {
  std::string text;
#if defined(__OPTIMIZE__)
  text += "optimised";
#else
  text += "NOT optimised (Debug?)";
#endif
#if defined(NDEBUG)
  text += ", NDEBUG";
#else
  text += ", asserts on";
#endif
  return text;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out + "\"";
}

int run(const BenchOptions& options) {
  drgrad::engine::ModelSpec spec;
  spec.backbone = drgrad::engine::parse_backbone(options.backbone);
  spec.num_dense = kCensusDense;
  for (std::size_t s = 0; s < std::size(bench::kCensusVocabularies); ++s) {
    drgrad::engine::EmbeddingSlotSpec slot;
    slot.name = "slot" + std::to_string(s);
    slot.vocabulary_size = bench::kCensusVocabularies[s];
    slot.dim = options.embedding_dim;
    spec.slots.push_back(slot);
  }
  spec.tasks = {{"income", 0}, {"never_married", 1}};
  spec.num_experts = options.num_experts;
  spec.expert_units = options.expert_units;
  spec.bottom_units = options.expert_units;
  spec.tower_units = options.tower_units;

  drgrad::engine::OptimizerSpec optimizer;  // Adam, learning rate 1e-3
  drgrad::engine::TrainingOptions training;
  training.batch_size = options.batch;
  training.seed = options.seed;
  training.device = drgrad::kernels::parse_device(options.device);
  training.cpu_threads = options.threads;  // the trainer sets the BLAS threads from this
  training.show_progress = false;
  training.save_checkpoints = false;

  bench::Dataset data = bench::make_data(bench::census_shape(),
                                         options.batch * options.dataset_batches, options.seed);
  if (!options.write_data_path.empty()) bench::write_dataset(data, options.write_data_path);
  std::vector<drgrad::io::Batch> batches;
  for (std::int64_t b = 0; b < options.dataset_batches; ++b) {
    std::vector<std::int64_t> rows(static_cast<std::size_t>(options.batch));
    for (std::int64_t i = 0; i < options.batch; ++i) rows[i] = b * options.batch + i;
    batches.push_back(drgrad::io::gather_rows(data.all, rows));
  }
  auto stream = std::make_unique<drgrad::engine::InMemoryBatchStream>(
      data.schema, data.all, options.batch, false, options.seed);
  drgrad::engine::Trainer trainer(spec, optimizer, training, std::move(stream), nullptr);

  const std::int64_t parameters = trainer.model().parameters().total_elements();

  struct utsname machine {};
  uname(&machine);
  const std::int64_t input_width =
      kCensusDense + options.embedding_dim * static_cast<std::int64_t>(spec.slots.size());
  std::printf("# train_throughput_bench (drgrad)  %s\n", utc_now().c_str());
  std::printf("# machine: %s, %u logical cores, %s %s\n", first_cpuinfo_value("model name").c_str(),
              std::thread::hardware_concurrency(), machine.sysname, machine.release);
  std::printf("# load average before the run: %s\n", load_average().c_str());
  std::printf("# build: %s, %s; OpenBLAS %s (core %s), threads %d%s\n", compiler_name().c_str(),
              build_flags().c_str(), openblas_get_config(), openblas_get_corename(),
              drgrad::kernels::cpu_blas_threads(),
              options.threads > 0 ? " (--threads)" : " (--threads 0: all cores)");
  std::printf(
      "# data: Census-shaped synthetic, %zu slots (Census vocabularies, 1 id each, embedding dim "
      "%lld, sum pooling), %lld dense, %d binary tasks; %lld pre-built batches cycled\n",
      spec.slots.size(), static_cast<long long>(options.embedding_dim),
      static_cast<long long>(kCensusDense), kNumTasks,
      static_cast<long long>(options.dataset_batches));
  std::printf(
      "# model: %s, input width %lld, experts %lld x [%s], towers [%s] + logit, relu; %lld "
      "parameters; Adam lr %g; device %s\n",
      drgrad::engine::backbone_name(spec.backbone), static_cast<long long>(input_width),
      static_cast<long long>(spec.num_experts), join_units(spec.expert_units).c_str(),
      join_units(spec.tower_units).c_str(), static_cast<long long>(parameters),
      optimizer.learning_rate, training.device.to_string().c_str());
  std::printf(
      "# method: batch %lld, %lld warm-up steps, %d runs x %lld steps, steady_clock and "
      "process CPU time around Trainer::train_step only\n",
      static_cast<long long>(options.batch), static_cast<long long>(options.warmup), options.runs,
      static_cast<long long>(options.steps));

  std::size_t next_batch = 0;
  std::vector<double> step_losses;  // sum over tasks, every step in order
  auto one_step = [&] {
    const std::vector<double> losses = trainer.train_step(batches[next_batch]);
    next_batch = (next_batch + 1) % batches.size();
    double total = 0;
    for (const double loss : losses) total += loss;
    step_losses.push_back(total);
  };

  for (std::int64_t i = 0; i < options.warmup; ++i) one_step();
  std::printf("%-6s %10s %12s %14s %12s %16s\n", "run", "steps", "seconds", "samples/s",
              "cpu_seconds", "samples/cpu_s");
  std::vector<double> rates, cpu_rates;
  for (int r = 0; r < options.runs; ++r) {
    const double cpu_start = process_cpu_seconds();
    const auto start = std::chrono::steady_clock::now();
    for (std::int64_t i = 0; i < options.steps; ++i) one_step();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double cpu_seconds = process_cpu_seconds() - cpu_start;
    const auto samples = static_cast<double>(options.steps * options.batch);
    rates.push_back(samples / seconds);
    cpu_rates.push_back(samples / cpu_seconds);
    std::printf("%-6d %10lld %12.4f %14.1f %12.4f %16.1f\n", r + 1,
                static_cast<long long>(options.steps), seconds, rates.back(), cpu_seconds,
                cpu_rates.back());
  }
  const double median_rate = median(rates);
  const double median_cpu_rate = median(cpu_rates);
  const double rss = peak_rss_mib();

  // Correctness in the same run: every loss finite (train_step throws otherwise) and the mean
  // summed loss of the last tenth of the steps below that of the first tenth.
  const std::size_t window = std::max<std::size_t>(1, step_losses.size() / 10);
  double first = 0, last = 0;
  for (std::size_t i = 0; i < window; ++i) {
    first += step_losses[i] / static_cast<double>(window);
    last += step_losses[step_losses.size() - 1 - i] / static_cast<double>(window);
  }
  const bool all_finite = std::all_of(step_losses.begin(), step_losses.end(),
                                      [](double v) { return std::isfinite(v); });
  const bool loss_fell = all_finite && last < first;
  std::printf("median %10s %12s %14.1f %12s %16.1f\n", "", "", median_rate, "", median_cpu_rate);
  std::printf("# peak RSS %.1f MiB\n", rss);
  std::printf(
      "# check: summed task loss, mean of first %zu steps %.4f -> last %zu steps %.4f: %s\n",
      window, first, window, last, loss_fell ? "falls, OK" : "DOES NOT FALL (training is broken)");

  if (!options.json_path.empty()) {
    std::ofstream out(options.json_path);
    if (!out)
      throw std::runtime_error("cannot open " + options.json_path + " for writing (--json)");
    out << "{\n  \"benchmark\": \"train_throughput\",\n  \"implementation\": \"drgrad\",\n"
        << "  \"date\": " << json_string(utc_now()) << ",\n"
        << "  \"machine\": {\"cpu\": " << json_string(first_cpuinfo_value("model name"))
        << ", \"logical_cores\": " << std::thread::hardware_concurrency()
        << ", \"kernel\": " << json_string(std::string(machine.sysname) + " " + machine.release)
        << ", \"load_average\": " << json_string(load_average()) << "},\n"
        << "  \"build\": {\"compiler\": " << json_string(compiler_name())
        << ", \"flags\": " << json_string(build_flags())
        << ", \"openblas\": " << json_string(openblas_get_config())
        << ", \"threads\": " << drgrad::kernels::cpu_blas_threads() << "},\n"
        << "  \"config\": {\"backbone\": " << json_string(options.backbone)
        << ", \"device\": " << json_string(training.device.to_string())
        << ", \"batch\": " << options.batch << ", \"slots\": " << spec.slots.size()
        << ", \"dense\": " << kCensusDense << ", \"tasks\": " << kNumTasks
        << ", \"embedding_dim\": " << options.embedding_dim
        << ", \"experts\": " << options.num_experts << ", \"expert_units\": ["
        << join_units(options.expert_units) << "], \"tower_units\": ["
        << join_units(options.tower_units) << "], \"parameters\": " << parameters
        << ", \"warmup\": " << options.warmup << ", \"runs\": " << options.runs
        << ", \"steps\": " << options.steps << "},\n  \"samples_per_second\": [";
    for (std::size_t r = 0; r < rates.size(); ++r) out << (r ? ", " : "") << rates[r];
    out << "],\n  \"median_samples_per_second\": " << median_rate
        << ",\n  \"samples_per_cpu_second\": [";
    for (std::size_t r = 0; r < cpu_rates.size(); ++r) out << (r ? ", " : "") << cpu_rates[r];
    out << "],\n  \"median_samples_per_cpu_second\": " << median_cpu_rate
        << ",\n  \"peak_rss_mib\": " << rss << ",\n  \"check\": {\"first_loss\": " << first
        << ", \"last_loss\": " << last << ", \"passed\": " << (loss_fell ? "true" : "false")
        << "}\n}\n";
  }
  return loss_fell ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_arguments(argc, argv));
  } catch (const std::exception& error) {
    std::fprintf(stderr, "train_throughput_bench: %s\n", error.what());
    return 2;
  }
}
