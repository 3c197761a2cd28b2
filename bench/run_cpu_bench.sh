#!/usr/bin/env bash
# CPU training throughput of drgrad against its PyTorch peer on the same Census-shaped data, the
# same model and the same thread count, run one after the other; prints both medians and the
# ratio drgrad/peer and leaves every JSON result in OUT_DIR.
#   bench/run_cpu_bench.sh [OUT_DIR]          (default bench-results/)
# Environment: THREADS (thread counts to run, default "2 1"), ROUNDS (drgrad-then-peer rounds per
# thread count, default 3; the summary takes the median over rounds), STEPS (100), RUNS (5),
# WARMUP (30), BATCH (512), BUILD_DIR (build-bench), PYTHON (a Python with torch; default
# .venv-bench/bin/python when present, else python3), PEER_OMP_WAIT_POLICY (default PASSIVE:
# torch's OpenMP threads sleep instead of spinning while they wait; with spinning, a machine
# shared with other work slowed the 2-thread peer tenfold). Without torch the script says how to
# install it (python3 -m venv .venv-bench && .venv-bench/bin/pip install torch numpy).
set -euo pipefail
cd "$(dirname "$0")/.."

out_dir="${1:-bench-results}"
threads_list="${THREADS:-2 1}"
rounds="${ROUNDS:-3}"
steps="${STEPS:-100}"
runs="${RUNS:-5}"
warmup="${WARMUP:-30}"
batch="${BATCH:-512}"
build_dir="${BUILD_DIR:-build-bench}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x .venv-bench/bin/python ]; then python=.venv-bench/bin/python; else python=python3; fi
fi
mkdir -p "$out_dir"

# --- build (Release, CPU only, just the benchmark) -----------------------------------------------
if [ ! -f "$build_dir/build.ninja" ]; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DDRGRAD_CUDA=OFF \
    -DDRGRAD_BUILD_TESTS=OFF >"$out_dir/cmake.log"
fi
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
if [ "$build_type" != "Release" ]; then
  echo "run_cpu_bench: $build_dir is a '$build_type' build; use a Release one (BUILD_DIR=...)" >&2
  exit 2
fi
cmake --build "$build_dir" --target train_throughput_bench -j "$(nproc)" >"$out_dir/build.log"
bench="$build_dir/bench/train_throughput_bench"

if ! "$python" -c "import torch, numpy" 2>/dev/null; then
  echo "run_cpu_bench: '$python' cannot import torch and numpy; install the peer with" >&2
  echo "  python3 -m venv .venv-bench && .venv-bench/bin/pip install torch numpy" >&2
  echo "or point PYTHON at a Python that has them" >&2
  exit 3
fi

data="$out_dir/census_shaped.bin"
rm -f "$data"  # written afresh by the first drgrad run, so both sides always read the same data
common=(--batch "$batch" --steps "$steps" --runs "$runs" --warmup "$warmup")
for threads in $threads_list; do
  for round in $(seq 1 "$rounds"); do
    tag="t${threads}-r${round}"
    echo "=== drgrad, $threads thread(s), round $round"
    extra=()
    [ -f "$data" ] || extra=(--write-data "$data")
    "$bench" "${common[@]}" --threads "$threads" --json "$out_dir/drgrad-$tag.json" "${extra[@]}" |
      tee "$out_dir/drgrad-$tag.txt"
    echo "=== torch peer, $threads thread(s), round $round"
    OMP_NUM_THREADS="$threads" OMP_WAIT_POLICY="${PEER_OMP_WAIT_POLICY:-PASSIVE}" \
      "$python" bench/peers/torch_mmoe.py --data "$data" "${common[@]}" --threads "$threads" \
      --json "$out_dir/torch-$tag.json" | tee "$out_dir/torch-$tag.txt"
  done
done

# --- summary: per thread count, the median over rounds of each side's median, and the ratio ----
# Wall-clock samples/s, and samples per CPU-second of the process (which leaves out the time spent
# waiting for a core that other work holds, so it is the steadier figure on a shared machine).
"$python" - "$out_dir" "$threads_list" "$rounds" <<'PYTHON' | tee "$out_dir/summary.txt"
import json, statistics, sys
out_dir, threads_list, rounds = sys.argv[1], sys.argv[2].split(), int(sys.argv[3])
summary = []
for key, title in (("median_samples_per_second", "wall clock, samples/s"),
                   ("median_samples_per_cpu_second", "CPU time, samples per CPU-second")):
    print(f"{title}:")
    print(f"{'threads':>7} {'drgrad':>10} {'torch':>10} {'drgrad/torch':>13}"
          f"  per-round drgrad | torch")
    for threads in threads_list:
        sides = {side: [json.load(open(f"{out_dir}/{side}-t{threads}-r{r}.json"))
                        for r in range(1, rounds + 1)] for side in ("drgrad", "torch")}
        medians = {side: [r[key] for r in results] for side, results in sides.items()}
        drgrad, torch = statistics.median(medians["drgrad"]), statistics.median(medians["torch"])
        checks = all(r["check"]["passed"] for results in sides.values() for r in results)
        print(f"{threads:>7} {drgrad:>10.0f} {torch:>10.0f} {drgrad / torch:>13.2f}  "
              f"{' '.join(f'{v:.0f}' for v in medians['drgrad'])} | "
              f"{' '.join(f'{v:.0f}' for v in medians['torch'])}"
              f"{'' if checks else '  (A LOSS CHECK FAILED)'}")
        summary.append({"measure": key, "threads": int(threads), "drgrad_median": drgrad,
                        "torch_median": torch, "ratio_drgrad_over_torch": drgrad / torch,
                        "round_medians": medians, "checks_passed": checks})
json.dump(summary, open(f"{out_dir}/summary.json", "w"), indent=2)
PYTHON
