#!/usr/bin/env bash
# GPU training throughput of drgrad against its PyTorch peer (eager and torch.compile) on the same
# data and GPU in one run, plus the device's copy-bandwidth and matrix-product ceilings; writes a
# summary with the ratios drgrad/eager (goal 3x) and drgrad/compile (goal 1.5x), the DRGrad
# step's overhead over MMoE (goal <= 5%) and what replaying the step as a CUDA graph gains (drgrad
# runs each model eagerly, eagerly with the device embedding plan, and as a CUDA graph).
#   bench/run_gpu_bench.sh OUT_DIR
# Writes into OUT_DIR: summary.txt (read it first), gpu_bench.jsonl (every measurement, one JSON
# object per line), ceilings.txt, drgrad.txt, torch_eager.txt, torch_compile.txt.
# Without a GPU every step says SKIPPED and the script exits 0.
# Environment: BUILD_DIR (default build-device; the benchmarks are built there when missing and
# the folder holds a configured build), DEVICE (cuda), PYTHON (a Python with torch:
# .venv-bench/bin/python when present, else python3), MODELS (gpu_train_bench's --models;
# default all five), VARIANTS (gpu_train_bench's --variants; default eager,device_plan,graph on
# a CUDA device, eager,device_plan elsewhere, since graphs need CUDA), MODES ("eager compile"),
# COMPILE_MODE (torch.compile mode, "default"),
# STEPS (100), WARMUP (20), RUNS (5), DATA_DIR (where the generated data files go; default
# OUT_DIR/data), GPU_BENCH_BUDGET_S (seconds for the whole script, default 600; steps that would
# pass it are skipped and said so).
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: bench/run_gpu_bench.sh OUT_DIR" >&2
  exit 2
fi
mkdir -p "$1" || exit 2
out_dir=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2

build_dir="${BUILD_DIR:-build-device}"
device="${DEVICE:-cuda}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x .venv-bench/bin/python ]; then python=.venv-bench/bin/python; else python=python3; fi
fi
models="${MODELS:-census_mmoe,census_split_mmoe,census_drgrad,industrial_mmoe,industrial_drgrad}"
case "$device" in
  cuda*) variants="${VARIANTS:-eager,device_plan,graph}" ;;
  *) variants="${VARIANTS:-eager,device_plan}" ;;
esac
modes="${MODES:-eager compile}"
compile_mode="${COMPILE_MODE:-default}"
steps="${STEPS:-100}"
warmup="${WARMUP:-20}"
runs="${RUNS:-5}"
data_dir="${DATA_DIR:-$out_dir/data}"
budget_s="${GPU_BENCH_BUDGET_S:-600}"
start_s=$(date +%s)
jsonl="$out_dir/gpu_bench.jsonl"
summary="$out_dir/summary.txt"
rm -f "$jsonl"
: >"$summary"
mkdir -p "$data_dir"

# The peer's lines reach its log as they are printed, also when a timeout ends it.
export PYTHONUNBUFFERED=1

note() { echo "$*" | tee -a "$summary"; }
seconds_left() { echo $((budget_s - ($(date +%s) - start_s))); }

# step NAME LOG MAX_SECONDS COMMAND...: COMMAND under `timeout` (at most what is left of the
# budget), its output teed into LOG; one summary line per step. Sets step_rc.
step_rc=0
step() {
  local name=$1 log=$2 max_s=$3
  shift 3
  local left limit begin
  left=$(($(seconds_left) - 10))
  limit=$((max_s < left ? max_s : left))
  if ((limit < 10)); then
    note "step $name: skipped, no time left in the ${budget_s}s budget"
    step_rc=124
    return
  fi
  begin=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" </dev/null 2>&1 | tee -a "$log"
  step_rc=${PIPESTATUS[0]}
  local status=ok
  ((step_rc == 124 || step_rc == 137)) && status="timeout after ${limit}s"
  ((step_rc != 0 && step_rc != 124 && step_rc != 137)) && status="failed (exit $step_rc)"
  grep -q '^SKIPPED:' "$log" && status="SKIPPED ($(grep -m1 '^SKIPPED:' "$log"))"
  note "step $name: $status, $(($(date +%s) - begin))s, log $(basename "$log")"
}

note "# drgrad GPU benchmark, $(date -u '+%F %T') UTC, $(git rev-parse --short HEAD 2>/dev/null ||
  echo '?'), device $device, models $models, variants $variants, modes $modes"

# --- the benchmarks (built when missing) ---------------------------------------------------------
train_bench="$build_dir/bench/gpu_train_bench"
ceilings_bench="$build_dir/bench/gpu_ceilings_bench"
if [ ! -x "$train_bench" ] || [ ! -x "$ceilings_bench" ]; then
  if [ -f "$build_dir/CMakeCache.txt" ]; then
    step build "$out_dir/build.log" 300 cmake --build "$build_dir" --target gpu_train_bench \
      gpu_ceilings_bench
  fi
  if [ ! -x "$train_bench" ]; then
    note "no $train_bench: configure a CUDA build there (BUILD_DIR=...; see docs/gpu.md)"
    exit 1
  fi
fi

# --- drgrad (which also writes the data for the peer), the peer eager, the ceilings, and last the
# peer under torch.compile, whose first compilation can take minutes: the issue's goals first, and
# the one step of unknown length at the end, where a timeout costs nothing else.
: >"$out_dir/ceilings.txt"
: >"$out_dir/drgrad.txt"
step drgrad "$out_dir/drgrad.txt" 240 "$train_bench" --device "$device" --models "$models" \
  --variants "$variants" --steps "$steps" --warmup "$warmup" --runs "$runs" \
  --write-data "$data_dir" --json "$jsonl"
if grep -q '^SKIPPED:' "$out_dir/drgrad.txt"; then
  note "SKIPPED: no CUDA device; no peer run and no ratios"
  exit 0
fi

peer_ok=1
if ! "$python" -c "import torch" 2>/dev/null; then
  note "peer: '$python' cannot import torch (PYTHON=...; on the device machine python3 has it)"
  peer_ok=0
fi
run_peer() {
  : >"$out_dir/torch_$1.txt"
  step "torch-$1" "$out_dir/torch_$1.txt" 300 "$python" bench/peers/torch_mtl_gpu.py \
    --data-dir "$data_dir" --device "$device" --models "$models" --modes "$1" \
    --compile-mode "$compile_mode" --steps "$steps" --warmup "$warmup" --runs "$runs" \
    --json "$jsonl"
}
for mode in $modes; do
  [ "$mode" != compile ] && ((peer_ok)) && run_peer "$mode"
done
case "$device" in
  cuda*)
    step ceilings "$out_dir/ceilings.txt" 60 "$ceilings_bench" --device "$device" --json "$jsonl"
    ;;
  *) note "step ceilings: not run, device $device is no GPU" ;;
esac
for mode in $modes; do
  [ "$mode" = compile ] && ((peer_ok)) && run_peer "$mode"
done

# --- summary: medians, ratios against the goals, ceilings -----------------------------------------
python3 - "$jsonl" <<'PYTHON' | tee -a "$summary"
import json, os, sys
if not os.path.exists(sys.argv[1]):
    print(f"no measurements: {sys.argv[1]} was not written (see the steps' logs)")
    sys.exit(0)
records = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
train = {}
for r in records:
    if r.get("benchmark") == "gpu_train":
        train[(r["model"], r["mode"])] = r
# drgrad's rows are named <model>, <model>+device_plan and <model>+graph; the peer's rows are
# named <model>, and each drgrad row is set against the peer's rows of its base model.
def base(model):
    r = train.get((model, "drgrad"))
    return r.get("base_model", model) if r else model
def record(model, mode):
    return train.get((model if mode == "drgrad" else base(model), mode))
ceilings = [r for r in records if r.get("benchmark") == "gpu_ceiling"]
if ceilings:
    print("ceilings (median):")
    for r in ceilings:
        print(f"  {r['name']:<10} {r['rate']:>10.1f} {r['unit']:<8}"
              f"{'' if r['check']['passed'] else '  CHECK FAILED'}")
models = []
for model, _ in train:
    if model not in models:
        models.append(model)
width = max([20] + [len(model) for model in models])
print(f"{'model':<{width}} {'drgrad':>12} {'torch eager':>12} {'torch compile':>14} "
      f"{'/eager':>7} {'/compile':>9}   (samples/s, medians; goals 3x and 1.5x)")
def rate(model, mode):
    r = record(model, mode)
    return r["median_samples_per_second"] if r else None
def cell(value, width, digits=0):
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"
for model in models:
    d, e, c = rate(model, "drgrad"), rate(model, "eager"), rate(model, "compile")
    rows = [record(model, m) for m in ("drgrad", "eager", "compile") if record(model, m)]
    checks = [r["check"]["passed"] for r in rows]
    # The peer must train the same model: its parameter count must equal drgrad's.
    counts = {r["config"]["parameters"] for r in rows}
    print(f"{model:<{width}} {cell(d, 12)} {cell(e, 12)} {cell(c, 14)} "
          f"{cell(d / e if d and e else None, 7, 2)} {cell(d / c if d and c else None, 9, 2)}"
          f"{'' if all(checks) else '   A LOSS CHECK FAILED'}"
          f"{'' if len(counts) <= 1 else '   PARAMETER COUNTS DIFFER: ' + str(sorted(counts))}")
# The matrix products' share of the fp32 product ceiling (drgrad's count of 6 in out per linear
# layer and sample, the same for the peer's identical model).
fp32 = next((r["rate"] for r in ceilings if r["name"] == "gemm fp32"), None)
for model in models:
    r = train.get((model, "drgrad"))
    if not r or "matmul_flops_per_step" not in r:
        continue
    per_sample = r["matmul_flops_per_step"] / r["config"]["batch"]
    parts = []
    for mode in ("drgrad", "eager", "compile"):
        if rate(model, mode):
            tflops = per_sample * rate(model, mode) / 1e12
            share = f" ({100 * tflops / fp32:.1f}% of fp32 gemm)" if fp32 else ""
            parts.append(f"{mode} {tflops:.2f}{share}")
    print(f"{model}: matrix products {r['matmul_flops_per_step'] / 1e9:.3g} GFLOP/step; "
          f"TFLOP/s: {', '.join(parts)}")
for r in records:
    if r.get("benchmark") == "gpu_train_overhead":
        graph = r.get("variant") == "graph"
        line = (f"{r['shape']}{' with CUDA graphs' if graph else ''}: DRGrad step "
                f"{100 * r['drgrad_step_overhead']:+.1f}% against MMoE "
                f"(goal <= +5%: {'met' if r['met'] else 'NOT met'})")
        for mode in ("eager", "compile") if not graph else ():
            m, g = rate(f"{r['shape']}_mmoe", mode), rate(f"{r['shape']}_drgrad", mode)
            if m and g:
                line += f"; torch {mode} {100 * (m / g - 1):+.1f}%"
        print(line)
# What replaying the step as a CUDA graph gains, in samples/s, over drgrad's eager steps.
for r in records:
    if r.get("benchmark") == "gpu_train_graph_speedup":
        over = []
        if "graph_speedup_over_device_plan" in r:
            over.append(f"{r['graph_speedup_over_device_plan']:.2f}x the device_plan eager step")
        if "graph_speedup_over_eager" in r:
            over.append(f"{r['graph_speedup_over_eager']:.2f}x the eager step")
        print(f"{r['model']}: CUDA graph step {over[0]}"
              f"{f' ({over[1]})' if len(over) > 1 else ''}")
PYTHON
note "# finished in $(($(date +%s) - start_s))s"
exit 0
