#!/usr/bin/env python3
# TensorFlow tf.data peer of bench/io_bench.cc: reads the TFRecord + tf.train.Example files that
# io_bench writes (run it with --folder DIR to keep them) with TFRecordDataset and batched
# parse_example on one thread, timed the same way (one warm-up, several runs, median samples/s).
#   build/bench/io_bench --samples 100000 --folder /tmp/io-bench-data
#   python3 bench/tf_data_peer.py --folder /tmp/io-bench-data
import argparse
import json
import os
import platform
import statistics
import sys
import time


def cpu_model():
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--folder", required=True, help="folder io_bench --folder wrote into")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4096, help="records per parse_example call")
    parser.add_argument("--json", help="also write the results as JSON")
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # imported late: --help works without TensorFlow

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)

    spec = {f"dense_{i}": tf.io.FixedLenFeature([1], tf.float32) for i in range(7)}
    spec.update({f"slot_{i}": tf.io.VarLenFeature(tf.int64) for i in range(32)})
    spec["income"] = tf.io.FixedLenFeature([1], tf.float32)
    spec["never_married"] = tf.io.FixedLenFeature([1], tf.float32)

    cases = [("tfrecord_example_none", "census.tfrecord", ""),
             ("tfrecord_example_gzip", "census.tfrecord.gz", "GZIP")]
    print("# tf_data_peer: TFRecordDataset + batched tf.io.parse_example, one thread")
    print(f"# machine: {cpu_model()}, {os.cpu_count()} hardware threads, {platform.system()} "
          f"{platform.release()}")
    print(f"# tensorflow {tf.__version__}, python {platform.python_version()}")
    print(f"# batch {args.batch} records per parse; runs: 1 warm-up + {args.runs} timed, median")

    def read(path, compression):
        dataset = tf.data.TFRecordDataset(path, compression_type=compression)
        dataset = dataset.batch(args.batch).map(lambda records: tf.io.parse_example(records, spec))
        options = tf.data.Options()
        options.threading.private_threadpool_size = 1
        options.threading.max_intra_op_parallelism = 1
        dataset = dataset.with_options(options)
        samples, bytes_read, label_sum = 0, 0, 0.0
        for parsed in dataset:
            samples += int(parsed["income"].shape[0])
            label_sum += float(tf.reduce_sum(parsed["income"]) +
                               tf.reduce_sum(parsed["never_married"]))
        return samples, label_sum

    rows = []
    print(f"{'format':<24} {'threads':>8} {'file_MB':>12} {'samples/s':>14} {'median_s':>10}")
    for name, file, compression in cases:
        path = os.path.join(args.folder, file)
        if not os.path.exists(path):
            sys.exit(f"tf_data_peer: {path} is missing; run io_bench --folder {args.folder} first")
        read(path, compression)  # warm-up
        seconds = []
        for _ in range(args.runs):
            start = time.perf_counter()
            samples, label_sum = read(path, compression)
            seconds.append(time.perf_counter() - start)
        median = statistics.median(seconds)
        rows.append({"format": name, "threads": 1, "file_bytes": os.path.getsize(path),
                     "median_seconds": median, "samples_per_second": samples / median,
                     "samples": samples, "label_sum": label_sum})
        print(f"{name:<24} {1:>8} {os.path.getsize(path) / 1e6:>12.2f} {samples / median:>14.0f} "
              f"{median:>10.4f}")
    print(f"# samples read per run: {rows[0]['samples']} (label sum {rows[0]['label_sum']:.1f}); "
          "compare with io_bench's")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"benchmark": "tf_data_peer", "cpu": cpu_model(),
                       "tensorflow": tf.__version__, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
