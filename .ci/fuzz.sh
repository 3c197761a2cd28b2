#!/usr/bin/env bash
# Builds the io libFuzzer targets with clang (address + undefined sanitizers) and runs each for
# FUZZ_SECONDS (default 20) from a seed corpus of real files. Fails on any crash, hang or report.
#   .ci/fuzz.sh [target ...]    (default: all three targets)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${FUZZ_BUILD_DIR:-build-fuzz}"
seconds="${FUZZ_SECONDS:-20}"
targets=("$@")
((${#targets[@]})) || targets=(tfrecord_framing_fuzzer example_fuzzer shard_block_fuzzer)

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ is needed (apt-get install clang)"; exit 1; }
CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DDRGRAD_CUDA=OFF \
  -DDRGRAD_BUILD_FUZZERS=ON -DDRGRAD_BUILD_TESTS=OFF -DDRGRAD_BUILD_BENCH=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build_dir" --target "${targets[@]}"

# Seeds: real TFRecord files, single Example records cut out of them, and a small shard.
corpus_root="$build_dir/fuzz-corpus"
mkdir -p "$corpus_root"
data="../shared/data/tfrecord"
python3 - "$data" "$corpus_root" <<'PY'
import os, struct, sys
data, root = sys.argv[1], sys.argv[2]
for name in ("tfrecord_framing_fuzzer", "example_fuzzer", "shard_block_fuzzer"):
    os.makedirs(os.path.join(root, name), exist_ok=True)
if os.path.isdir(data):
    for file in sorted(os.listdir(data)):
        raw = open(os.path.join(data, file), "rb").read()
        # control byte 3 = detect compression
        open(os.path.join(root, "tfrecord_framing_fuzzer", file), "wb").write(b"\x03" + raw[:8192])
        if file.endswith(".tfrecords"):
            offset, count = 0, 0
            while offset + 12 <= len(raw) and count < 4:
                (length,) = struct.unpack_from("<Q", raw, offset)
                payload = raw[offset + 12: offset + 12 + length]
                open(os.path.join(root, "example_fuzzer", f"{file}-{count}"), "wb").write(payload)
                offset += 16 + length
                count += 1
PY

status=0
for target in "${targets[@]}"; do
  echo "== $target for ${seconds}s"
  artifacts="$build_dir/fuzz-artifacts/$target/"
  mkdir -p "$artifacts"
  if ! "$build_dir/io/fuzz/$target" "$corpus_root/$target" -max_total_time="$seconds" \
      -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$artifacts" 2>"$build_dir/$target.log"; then
    echo "fuzz.sh: $target FAILED; reproducer in $artifacts, log in $build_dir/$target.log"
    tail -40 "$build_dir/$target.log"
    status=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$build_dir/$target.log" || true
  fi
done
exit $status
