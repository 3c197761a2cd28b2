#!/usr/bin/env bash
# Read + decode throughput of drgrad's io layer against TensorFlow's tf.data on the same
# TFRecord files, the same machine and the same thread counts, run one after the other; prints
# both, the ratios drgrad/TensorFlow, and the shard rate against the 3 M samples/s/core goal.
#   bench/run_io_bench.sh [OUT_DIR]          (default bench-results/io; the data files go there)
# Environment: SAMPLES (200000), RUNS (5), BATCH (512), THREADS (the multi-threaded rows, 2),
# ROUNDS (drgrad-then-TensorFlow rounds, 3; the summary takes the median over rounds),
# BUILD_DIR (build-bench), PYTHON (a Python with tensorflow; default .venv-tf/bin/python when
# present, else python3). Without TensorFlow only drgrad's numbers are reported, with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir="${1:-bench-results/io}"
samples="${SAMPLES:-200000}"
runs="${RUNS:-5}"
batch="${BATCH:-512}"
threads="${THREADS:-2}"
rounds="${ROUNDS:-3}"
build_dir="${BUILD_DIR:-build-bench}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x .venv-tf/bin/python ]; then python=.venv-tf/bin/python; else python=python3; fi
fi
mkdir -p "$out_dir"
data_dir="$out_dir/data"

# --- build (Release, CPU only, just the benchmark) -----------------------------------------------
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDRGRAD_CUDA=OFF \
    -DDRGRAD_BUILD_TESTS=OFF >"$out_dir/cmake.log"
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
if [ "$build_type" != "Release" ]; then
  echo "run_io_bench: $build_dir is a '$build_type' build; use a Release one (BUILD_DIR=...)" >&2
  exit 2
fi
cmake --build "$build_dir" --target io_bench -j "$(nproc)" >"$out_dir/build.log"
bench="$build_dir/bench/io_bench"

have_tf=1
tf_reason=""
if ! tf_reason=$("$python" -c "import tensorflow" 2>&1); then
  have_tf=0
  echo "run_io_bench: '$python' cannot import tensorflow; reporting drgrad alone. Install with" >&2
  echo "  python3 -m venv .venv-tf && .venv-tf/bin/pip install tensorflow-cpu" >&2
  echo "$tf_reason" | tail -3 >"$out_dir/tensorflow-missing.txt"
fi

# Both sides read the files the first drgrad run writes (the later rounds rewrite the same bytes:
# the generator is seeded).
for round in $(seq 1 "$rounds"); do
  echo "=== drgrad io_bench, round $round (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  "$bench" --samples "$samples" --runs "$runs" --batch "$batch" --threads "$threads" \
    --folder "$data_dir" --json "$out_dir/drgrad-r$round.json" | tee "$out_dir/drgrad-r$round.txt"
  if [ "$have_tf" = 1 ]; then
    for peer_threads in 1 "$threads"; do
      echo "=== TensorFlow tf.data, $peer_threads thread(s), round $round" \
        "(load average $(cut -d' ' -f1-3 /proc/loadavg))"
      "$python" bench/peers/tf_data_peer.py --folder "$data_dir" --runs "$runs" --batch "$batch" \
        --threads "$peer_threads" --json "$out_dir/tf-t$peer_threads-r$round.json" |
        tee "$out_dir/tf-t$peer_threads-r$round.txt"
      if [ "$threads" = 1 ]; then break; fi
    done
  fi
done

# --- summary: medians over rounds; wall clock and samples per CPU-second of the process ----------
python3 - "$out_dir" "$rounds" "$threads" "$have_tf" <<'PYTHON' | tee "$out_dir/summary.txt"
import json, os, statistics, sys
out_dir, rounds, threads, have_tf = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
load = lambda name: json.load(open(os.path.join(out_dir, name)))
drgrad_runs = [load(f"drgrad-r{r}.json") for r in range(1, rounds + 1)]

def drgrad(format_name, thread_count, key):
    values = [row[key] for run in drgrad_runs for row in run["rows"]
              if row["format"] == format_name and row["threads"] == thread_count]
    return statistics.median(values) if values else None

def tf(format_name, thread_count, key):
    if not have_tf:
        return None
    values = [row[key] for r in range(1, rounds + 1)
              for row in load(f"tf-t{thread_count}-r{r}.json")["rows"] if row["format"] == format_name]
    return statistics.median(values) if values else None

summary = {"rounds": rounds, "comparisons": [], "goals": []}
print(f"median over {rounds} rounds of each side's median")
print(f"{'comparison':<44} {'measure':<16} {'drgrad':>10} {'tensorflow':>11} {'ratio':>7}")
comparisons = [("tfrecord_example_none", "tfrecord_example_none", 1),
               ("tfrecord_example_gzip", "tfrecord_example_gzip", 1),
               ("reader_tfrecord_none", "tfrecord_example_none", 1),
               ("reader_tfrecord_gzip", "tfrecord_example_gzip", 1)]
if threads != 1:
    comparisons += [("reader_tfrecord_none", "tfrecord_example_none", threads),
                    ("reader_tfrecord_gzip", "tfrecord_example_gzip", threads)]
for drgrad_format, tf_format, thread_count in comparisons:
    for key, label in (("samples_per_second", "samples/s"),
                       ("samples_per_cpu_second", "samples/cpu_s")):
        mine, theirs = drgrad(drgrad_format, thread_count, key), tf(tf_format, thread_count, key)
        ratio = mine / theirs if mine and theirs else None
        name = f"{drgrad_format} vs tf.data, {thread_count} thr"
        print(f"{name:<44} {label:<16} {mine:>10.0f} "
              f"{theirs if theirs is not None else float('nan'):>11.0f} "
              f"{ratio if ratio is not None else float('nan'):>7.2f}")
        summary["comparisons"].append({"drgrad": drgrad_format, "tensorflow": tf_format,
                                       "threads": thread_count, "measure": key,
                                       "drgrad_value": mine, "tensorflow_value": theirs,
                                       "ratio": ratio})
for item in summary["comparisons"]:
    if item["threads"] != 1 or item["measure"] != "samples_per_cpu_second":
        continue
    ratio = item["ratio"]
    verdict = "no TensorFlow" if ratio is None else ("met" if ratio >= 2 else "NOT met")
    print(f"goal: >= 2x tf.data per core: {item['drgrad']}, samples/cpu_s ratio "
          f"{ratio if ratio is not None else float('nan'):.2f} ({verdict})")
    summary["goals"].append({"format": item["drgrad"], "measure": "ratio_samples_per_cpu_second",
                             "value": ratio, "goal": 2.0, "met": ratio is not None and ratio >= 2})
for shard_format in ("shard_zstd", "reader_shard_zstd"):
    for key in ("samples_per_second", "samples_per_cpu_second"):
        value = drgrad(shard_format, 1, key)
        print(f"goal: >= 3.0 M samples/s/core from zstd shards: {shard_format}, 1 thread, {key} "
              f"{value / 1e6:.2f} M ({'met' if value >= 3e6 else 'NOT met'})")
        summary["goals"].append({"format": shard_format, "measure": key, "value": value,
                                 "goal": 3e6, "met": value >= 3e6})
summary["correct"] = all(run["correct"] for run in drgrad_runs)
print("drgrad correctness checks:", "ok" if summary["correct"] else "FAILED")
json.dump(summary, open(os.path.join(out_dir, "summary.json"), "w"), indent=2)
PYTHON
