#!/usr/bin/env bash
# The one prepared check for a GPU machine: report the machine, build the CUDA backend (against
# the Debian packages carried in .deps/ when the machine lacks them), then in order of value: the
# GPU tests, the end-to-end GPU benchmark with its PyTorch peer, the kernel benchmarks, the CPU
# tests, compute-sanitizer; every log plus summary.txt lands in OUT_DIR.
#   tools/device_check.sh OUT_DIR
# Never hangs (every step runs under `timeout`, all of them inside one overall budget) and exits 0
# once the summary is written, whatever failed: summary.txt says which step did.
# Environment: BUILD_DIR (default build-device; reused when it already holds a configured build),
# CUDA_ARCHITECTURES (default 90), JOBS (default: all cores), DEVICE_CHECK_BUDGET_S (default 540,
# seconds for the whole script; keep it under the device tool's per-command limit),
# GPU_BENCH_MODELS / GPU_BENCH_VARIANTS / GPU_BENCH_MODES / GPU_BENCH_STEPS (what
# bench/run_gpu_bench.sh runs here: default census_mmoe,census_drgrad,industrial_mmoe,
# eager,device_plan,graph, "eager compile", 30 steps).
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: tools/device_check.sh OUT_DIR" >&2
  exit 2
fi
mkdir -p "$1" || exit 2
out_dir=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2

build_dir="${BUILD_DIR:-build-device}"
case "$build_dir" in /*) ;; *) build_dir="$root/$build_dir" ;; esac
cuda_architectures="${CUDA_ARCHITECTURES:-90}"
jobs="${JOBS:-$(nproc)}"
budget_s="${DEVICE_CHECK_BUDGET_S:-540}"
start_s=$(date +%s)
summary="$out_dir/summary.txt"
# Logs (the device tool brings back at most 8 files from OUT_DIR): summary.txt, machine.log,
# build.log, ctest_gpu.log, ctest_all.log, bench.log, bench.jsonl, sanitizer.log.

seconds_left() { echo $((budget_s - ($(date +%s) - start_s))); }

{
  echo "# drgrad device check, $(date -u '+%F %T') UTC"
  echo "# repository $root at $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "$(git -C "$root" status --porcelain 2>/dev/null | grep -q . && echo '(with local changes)')"
  echo "# build $build_dir, CUDA architectures $cuda_architectures, $jobs jobs, budget ${budget_s}s"
  printf '%-22s %-8s %6s  %s\n' step status seconds note
} >"$summary"

# record STEP STATUS SECONDS NOTE: one line of the summary, written as soon as the step ends so
# that a run cut short still says how far it got.
record() { printf '%-22s %-8s %6s  %s\n' "$1" "$2" "$3" "$4" >>"$summary"; }

# run_step STEP LOG MAX_SECONDS COMMAND...: runs COMMAND under `timeout` (the smaller of
# MAX_SECONDS and what is left of the budget, less a reserve for the summary), appending its
# output to LOG. Sets step_status to ok, failed (exit code) or timeout.
step_status=""
run_step() {
  local step=$1 log=$2 max_s=$3
  shift 3
  local left limit begin rc
  left=$(($(seconds_left) - 15))
  limit=$((max_s < left ? max_s : left))
  if ((limit < 5)); then
    step_status=skipped
    record "$step" skipped 0 "no time left in the ${budget_s}s budget"
    return
  fi
  echo "=== $step: $* (limit ${limit}s)" >>"$log"
  begin=$(date +%s)
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1 </dev/null
  rc=$?
  if ((rc == 124 || rc == 137)); then
    step_status=timeout
  elif ((rc == 0)); then
    step_status=ok
  else
    step_status="failed"
  fi
  record "$step" "$step_status" $(($(date +%s) - begin)) "rc=$rc, log $(basename "$log")"
}

# --- the machine -----------------------------------------------------------------------------
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="$PATH:/usr/local/cuda/bin"
fi
machine_log="$out_dir/machine.log"
{
  echo "uname: $(uname -a)"
  [ -r /etc/os-release ] && grep -E '^(PRETTY_NAME)=' /etc/os-release
  echo "cores: $(nproc)"
} >"$machine_log" 2>&1
if command -v nvidia-smi >/dev/null; then
  run_step nvidia-smi "$machine_log" 30 nvidia-smi
  run_step nvidia-smi-query "$machine_log" 30 nvidia-smi \
    --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu \
    --format=csv
else
  record nvidia-smi missing 0 "no nvidia-smi on PATH: no NVIDIA driver here"
fi
for tool in nvcc cmake ninja g++; do
  if command -v "$tool" >/dev/null; then
    run_step "$tool-version" "$machine_log" 20 "$tool" --version
  else
    record "$tool-version" missing 0 "$tool is not on PATH"
  fi
done

# --- a build folder copied along from elsewhere (before the dependencies' files are put in it) ---
build_log="$out_dir/build.log"
cmake_home=""
if [ -f "$build_dir/CMakeCache.txt" ]; then
  cmake_home=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$build_dir/CMakeCache.txt")
fi
if [ -n "$cmake_home" ] && [ "$cmake_home" != "$root" ]; then
  # A build copied along from another checkout: make its source path lead here, so that the
  # cache and CTest's absolute paths stay valid, or start again when that path is taken.
  if [ ! -e "$cmake_home" ] && mkdir -p "$(dirname "$cmake_home")" 2>/dev/null &&
    ln -s "$root" "$cmake_home" 2>/dev/null; then
    record build-reuse ok 0 "build from $cmake_home; linked that path to $root"
  else
    record build-reuse fresh 0 "build from $cmake_home cannot be reused here; configuring anew"
    rm -rf "$build_dir"
    cmake_home=""
  fi
fi

# --- the carried dependencies (.deps, from tools/fetch_device_deps.sh) --------------------------
deps="$root/.deps/usr"
if [ -d "$deps" ]; then
  # A link a package ships with an absolute target (zlib1g-dev's libz.so ->
  # /lib/x86_64-linux-gnu/libz.so.1.2.13) leads nowhere, or to another version, on this machine;
  # FindZLIB then skips it for the static libz.a. Point such links into .deps, relatively.
  find "$root/.deps" -type l -lname '/*' | while read -r link; do
    target=$(readlink "$link")
    [ -e "$root/.deps$target" ] && ln -sfnr "$root/.deps$target" "$link"
  done
  # The unpacked .pc files say prefix=/usr; copies rewritten to this checkout's .deps go first on
  # PKG_CONFIG_PATH (the repository's path differs from one machine to the next).
  pkgconfig_dir="$build_dir/deps-pkgconfig"
  mkdir -p "$pkgconfig_dir"
  find "$deps" -name '*.pc' -path '*pkgconfig*' | while read -r pc; do
    sed -E "s#^([A-Za-z_]+)=/usr#\\1=$deps#" "$pc" >"$pkgconfig_dir/$(basename "$pc")"
  done
  # zstd's .pc names /usr/lib, not the multiarch folder its library is in.
  sed -i -E "s#^libdir=.*#libdir=$deps/lib/x86_64-linux-gnu#" "$pkgconfig_dir/libzstd.pc" \
    2>/dev/null
  library_dirs="$deps/lib/x86_64-linux-gnu:$deps/lib/x86_64-linux-gnu/openblas-pthread"
  # At run time only the carried libraries the machine lacks are put first (LD_LIBRARY_PATH wins
  # over the system's), so that the machine's own tools keep their own zlib, zstd and so on.
  runtime_dir="$build_dir/deps-runtime"
  rm -rf "$runtime_dir"
  mkdir -p "$runtime_dir"
  system_libraries=$( (ldconfig -p || /sbin/ldconfig -p) 2>/dev/null)
  for library in "$deps"/lib/x86_64-linux-gnu/*.so.[0-9] "$deps"/lib/x86_64-linux-gnu/*/*.so.[0-9]; do
    [ -e "$library" ] || continue
    if ! grep -qE "^[[:space:]]+$(basename "$library") " <<<"$system_libraries"; then
      ln -sf "$library" "$runtime_dir/$(basename "$library")"
    fi
  done
  export PKG_CONFIG_PATH="$pkgconfig_dir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  export CMAKE_PREFIX_PATH="$deps${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export LD_LIBRARY_PATH="$runtime_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LIBRARY_PATH="$library_dirs${LIBRARY_PATH:+:$LIBRARY_PATH}"
  if ! command -v pkg-config >/dev/null && [ -x "$deps/bin/pkgconf" ]; then
    export PKG_CONFIG="$deps/bin/pkgconf"  # FindPkgConfig reads this
  fi
  record deps ok 0 "$(grep -c '^Package' "$root/.deps/PACKAGES" 2>/dev/null || echo '?') packages\
 from .deps; carried libraries used at run time: $(find "$runtime_dir" -mindepth 1 -printf '%f ' | grep . || echo none)"
  record pkg-config ok 0 "openblas: $(${PKG_CONFIG:-pkg-config} --cflags --libs openblas 2>&1)"
else
  record deps absent 0 "no .deps/ carried: relying on the machine's own packages"
fi

# --- configure and build -----------------------------------------------------------------------
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# cuDNN (optional, for dense_epilogue_bench's comparison): on the GPU machine it may exist only
# inside the nvidia-cudnn-cu13 Python package next to PyTorch.
if [ -z "${CUDNN_ROOT:-}" ] && command -v python3 >/dev/null; then
  cudnn_root=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null)
  if [ -n "$cudnn_root" ] && [ -d "$cudnn_root" ]; then
    export CUDNN_ROOT="$cudnn_root"
    export LD_LIBRARY_PATH="$cudnn_root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    record cudnn found 0 "$cudnn_root (Python package)"
  fi
fi
if [ -z "$cmake_home" ]; then
  # CMake before 3.26 knows no C++20 flag for nvcc; naming it is harmless for later versions.
  run_step configure "$build_log" 180 cmake -S "$root" -B "$build_dir" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release -DDRGRAD_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$cuda_architectures" \
    -DDRGRAD_WARNINGS_AS_ERRORS=OFF ${CMAKE_PREFIX_PATH:+-DCMAKE_PREFIX_PATH="$CMAKE_PREFIX_PATH"} \
    -DCMAKE_CUDA20_STANDARD_COMPILE_OPTION=-std=c++20 \
    -DCMAKE_CUDA20_EXTENSION_COMPILE_OPTION=-std=c++20
else
  record configure reused 0 "existing $build_dir"
  step_status=ok
fi
# What the GPU checks and the end-to-end benchmark need is built first, the rest (the CPU test
# executables, the kernel benchmarks) only after that benchmark has run: a slow build then costs
# the lower-priority steps, not the GPU tests or the issue's goals.
configured=$step_status
if [ "$configured" = ok ]; then
  run_step build-gpu "$build_log" 420 cmake --build "$build_dir" -j "$jobs" --target gpu_tests \
    gpu_train_bench gpu_ceilings_bench
fi

# --- tests --------------------------------------------------------------------------------------
# count_results LOG: CTest's tally line, and how many tests it skipped or could not run.
count_results() {
  local tally skipped not_run
  tally=$(grep -E 'tests passed, [0-9]+ tests failed out of' "$1" | tail -1)
  skipped=$(grep -c '\*\*\*Skipped' "$1")
  not_run=$(grep -c '\*\*\*Not Run' "$1")
  echo "${tally:-no CTest tally}; $skipped skipped, $not_run not run"
}
gpu_log="$out_dir/ctest_gpu.log"
all_log="$out_dir/ctest_all.log"
if [ -f "$build_dir/CTestTestfile.cmake" ]; then
  # One GPU: the GPU tests run one at a time.
  run_step ctest-gpu "$gpu_log" 300 ctest --test-dir "$build_dir" -L gpu --output-on-failure \
    --timeout 240
  [ "$step_status" != skipped ] &&
    record ctest-gpu-results "$step_status" 0 "$(count_results "$gpu_log")"
else
  record ctest-gpu not-run 0 "no configured build in $build_dir"
fi

# --- benchmarks ---------------------------------------------------------------------------------
# The GPU benchmarks and their PyTorch peer in one run (bench/run_gpu_bench.sh): the ceilings,
# drgrad's and torch's samples/s and the ratios, and drgrad's step eager, with the device
# embedding plan and as a CUDA graph. Its data files stay in the build folder; its summary lines
# join summary.txt and its JSON lines become bench.jsonl.
# Steps: the three variants triple drgrad's rows (3 models -> 9). To keep the step's training
# steps about what they were (drgrad 3 rows and the peer's eager and compile 3 each, at 10 warm-up
# + 3 runs x 50 steps: 9 x 160 = 1440), each timed run is now 30 steps (15 rows x 100 = 1500);
# drgrad and the peer keep the same counts, so that they stay comparable. The 3 runs stay (a
# median needs three) and so do the 10 warm-up steps (the graph is captured on the second, and
# first-use costs such as cuBLAS plans and torch's first steps stay out of the clock).
bench_log="$out_dir/bench.log"
gpu_bench_dir="$build_dir/gpu-bench"
if [ -x "$build_dir/bench/gpu_train_bench" ]; then
  # The issue's goals before the kernel benchmarks: keep only a minute back for the steps after.
  gpu_bench_limit=$(($(seconds_left) - 15 - 60))
  ((gpu_bench_limit > 240)) && gpu_bench_limit=240
  rm -rf "$gpu_bench_dir"
  if ((gpu_bench_limit >= 20)); then
    run_step gpu-bench "$bench_log" "$gpu_bench_limit" env BUILD_DIR="$build_dir" \
      DATA_DIR="$build_dir/gpu-bench-data" GPU_BENCH_BUDGET_S="$((gpu_bench_limit - 10))" \
      MODELS="${GPU_BENCH_MODELS:-census_mmoe,census_drgrad,industrial_mmoe}" \
      VARIANTS="${GPU_BENCH_VARIANTS:-eager,device_plan,graph}" \
      MODES="${GPU_BENCH_MODES:-eager compile}" STEPS="${GPU_BENCH_STEPS:-30}" WARMUP=10 RUNS=3 \
      PYTHON="${GPU_BENCH_PYTHON:-python3}" "$root/bench/run_gpu_bench.sh" "$gpu_bench_dir"
  else
    record gpu-bench skipped 0 "no time left in the ${budget_s}s budget"
  fi
  if [ -f "$gpu_bench_dir/summary.txt" ]; then
    sed 's/^/  gpu-bench | /' "$gpu_bench_dir/summary.txt" >>"$summary"
    [ -f "$gpu_bench_dir/gpu_bench.jsonl" ] &&
      cp "$gpu_bench_dir/gpu_bench.jsonl" "$out_dir/bench.jsonl"
  fi
else
  record gpu-bench not-run 0 "no $build_dir/bench/gpu_train_bench"
fi

# Now the rest of the build: the kernel benchmarks and the CPU test executables.
[ "$configured" = ok ] && run_step build "$build_log" 300 cmake --build "$build_dir" -j "$jobs"

# The kernel benchmarks (router, Gram, dense epilogues, embedding plan): after the end-to-end
# benchmark, which carries the issue's goals, 60 seconds each at most.
found_bench=0
for bench in "$build_dir"/bench/*_bench; do
  [ -x "$bench" ] || continue
  found_bench=1
  name=$(basename "$bench")
  # gpu_*: run above by bench/run_gpu_bench.sh, with the peer; train_throughput_bench: the CPU
  # trainer's benchmark, which gpu_train_bench supersedes on a GPU.
  case "$name" in gpu_* | train_throughput_bench) continue ;; esac
  if ! command -v nvidia-smi >/dev/null; then
    record "$name" skipped 0 "no NVIDIA driver here"
    continue
  fi
  if ! timeout 20 "$bench" --help 2>&1 | grep -q -- '--device'; then
    record "$name" skipped 0 "takes no --device option"
    continue
  fi
  run_step "$name" "$bench_log" 60 "$bench" --device cuda
done
((found_bench)) || record benchmarks none 0 "no bench/*_bench executables in $build_dir"

# --- the rest of the suite (the CPU tests; the GPU tests ran first) -------------------------------
if [ -f "$build_dir/CTestTestfile.cmake" ]; then
  run_step ctest-all "$all_log" 120 ctest --test-dir "$build_dir" -LE gpu --output-on-failure \
    -j "$jobs" --timeout 100
  [ "$step_status" != skipped ] &&
    record ctest-all-results "$step_status" 0 "$(count_results "$all_log")"
fi

# --- memory and race checks, with what is left of the budget -------------------------------------
# compute-sanitizer works on Firecracker machines, not on gVisor ones; either way the summary says.
sanitizer_log="$out_dir/sanitizer.log"
gpu_tests="$build_dir/tests/gpu/gpu_tests"
if command -v compute-sanitizer >/dev/null && command -v nvidia-smi >/dev/null &&
  [ -x "$gpu_tests" ]; then
  run_step memcheck "$sanitizer_log" 150 compute-sanitizer --tool memcheck --error-exitcode 1 \
    "$gpu_tests"
  # The kernels that share memory between threads: column sums, dot and the loss sums.
  run_step racecheck "$sanitizer_log" 90 compute-sanitizer --tool racecheck --error-exitcode 1 \
    "$gpu_tests" "[gemm],[vector],[loss]"
else
  record compute-sanitizer skipped 0 "needs compute-sanitizer, a driver and gpu_tests"
fi

total_s=$(($(date +%s) - start_s))
echo "# finished in ${total_s}s" >>"$summary"
cat "$summary"
exit 0
