#!/usr/bin/env bash
# Builds the io libFuzzer targets with clang (address + undefined sanitizers) and runs each for
# FUZZ_SECONDS (default 20) from a seed corpus (real TFRecord files, single Examples, and a small
# shard written here from docs/formats.md). Fails on any crash, hang or sanitizer report.
#   .ci/fuzz.sh [target ...]    (default: all four targets)
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir="${FUZZ_BUILD_DIR:-build-fuzz}"
seconds="${FUZZ_SECONDS:-20}"
targets=("$@")
((${#targets[@]})) || targets=(tfrecord_framing_fuzzer example_fuzzer shard_block_fuzzer shard_file_fuzzer)

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
for name in ("tfrecord_framing_fuzzer", "example_fuzzer", "shard_block_fuzzer", "shard_file_fuzzer"):
    os.makedirs(os.path.join(root, name), exist_ok=True)

# A small stored (codec none) shard, written straight from the spec in docs/formats.md.
def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def masked(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

def frame(payload):
    length = struct.pack("<Q", len(payload))
    return length + struct.pack("<I", masked(length)) + payload + struct.pack("<I", masked(payload))

def name(text):
    return struct.pack("<I", len(text)) + text.encode()

def block(samples):
    body = struct.pack("<4I", 2, 2, 1, 0)
    body += struct.pack(f"<{2 * samples}f", *[0.5 * i for i in range(2 * samples)])
    body += struct.pack(f"<{samples}f", *[float(i % 2) for i in range(samples)])
    # slot 0: one id per sample, 1-byte ids; slot 1: counted bags, 8-byte ids
    body += struct.pack("<QBBH", samples, 1, 1, 0) + bytes(i % 10 for i in range(samples))
    lengths = [i % 3 for i in range(samples)]
    body += struct.pack("<QBBH", sum(lengths), 8, 0, 0) + struct.pack(f"<{samples}I", *lengths)
    body += struct.pack(f"<{sum(lengths)}q", *range(sum(lengths)))
    return struct.pack("<IIQQ", 0, 0, samples, len(body)) + body

# io::Schema::fingerprint(): FNV-1a 64 over kinds, names (each preceded by its uint64 length)
# and vocabulary sizes, in the order of io/data/batch.cc.
def fingerprint(dense, sparse, labels):
    state = 0xCBF29CE484222325
    def feed(data):
        nonlocal state
        for byte in data:
            state = ((state ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    def feed_text(text):
        feed(struct.pack("<Q", len(text)) + text.encode())
    feed_text("dense")
    for item in dense:
        feed_text(item)
    feed_text("sparse")
    for item, vocabulary in sparse:
        feed_text(item)
        feed(struct.pack("<q", vocabulary))
    feed_text("labels")
    for item in labels:
        feed_text(item)
    return state

schema = struct.pack("<3I", 2, 2, 1) + name("d0") + name("d1")
schema += name("s0") + struct.pack("<q", 10) + name("s1") + struct.pack("<q", 0) + name("y")
print_ = fingerprint(["d0", "d1"], [("s0", 10), ("s1", 0)], ["y"])
header = b"DRGSHARD" + struct.pack("<IIiIQ", 2, 0, 0, 0, print_) + schema
shard = frame(header)
entries = []
for samples in (5, 3):
    entries.append((len(shard), samples))
    shard += frame(block(samples))
index_offset = len(shard)
index = b"DRGINDEX" + struct.pack("<QQ", len(entries), sum(s for _, s in entries))
for offset, samples in entries:
    index += struct.pack("<QQ", offset, samples)
shard += frame(index) + frame(struct.pack("<Q", index_offset) + b"DRGLOCAT")
for flag in (0, 1):
    open(os.path.join(root, "shard_file_fuzzer", f"stored-{flag}"), "wb").write(bytes([flag]) + shard)
open(os.path.join(root, "spec-written.drgrad"), "wb").write(shard)
open(os.path.join(root, "shard_block_fuzzer", "stored-block"), "wb").write(block(4))

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
