#!/usr/bin/env python3
# TensorFlow tf.data peer of bench/io_bench.cc: reads the same TFRecord + tf.train.Example files
# with TFRecordDataset -> batch -> map(parse_example) on a fixed number of threads, timed like
# io_bench (one warm-up, several runs, median), and prints '#' lines then fixed columns.
#   build/bench/io_bench --folder /tmp/io-bench-data
#   python3 bench/peers/tf_data_peer.py --folder /tmp/io-bench-data --threads 1
import argparse
import json
import os
import platform
import statistics
import sys
import time

CASES = [("tfrecord_example_none", "census.tfrecord", ""),
         ("tfrecord_example_gzip", "census.tfrecord.gz", "GZIP")]


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
    parser = argparse.ArgumentParser(
        description="tf.data read + parse throughput on io_bench's TFRecord files")
    parser.add_argument("--folder", required=True, help="the folder io_bench --folder wrote into")
    parser.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up")
    parser.add_argument("--batch", type=int, default=512, help="records per parse_example call")
    parser.add_argument("--threads", type=int, default=1,
                        help="TensorFlow intra/inter-op threads, tf.data private thread pool and "
                        "map's num_parallel_calls (1 = the per-core figure)")
    parser.add_argument("--json", help="also write the results as JSON")
    args = parser.parse_args()
    if args.runs <= 0 or args.batch <= 0 or args.threads <= 0:
        sys.exit("tf_data_peer: --runs, --batch and --threads must be positive")
    for _, file, _ in CASES:
        if not os.path.exists(os.path.join(args.folder, file)):
            sys.exit(f"tf_data_peer: {os.path.join(args.folder, file)} is missing; run "
                     f"io_bench --folder {args.folder} first")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # imported late: --help and the checks above work without it

    # Must happen before TensorFlow creates its runtime (the first op).
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)

    # The layout io_bench writes: every feature holds exactly one value.
    spec = {f"slot_{i}": tf.io.FixedLenFeature([1], tf.int64) for i in range(32)}
    spec.update({f"dense_{i}": tf.io.FixedLenFeature([1], tf.float32) for i in range(7)})
    spec["income"] = tf.io.FixedLenFeature([1], tf.float32)
    spec["never_married"] = tf.io.FixedLenFeature([1], tf.float32)

    print("# tf_data_peer: TFRecordDataset -> batch -> map(tf.io.parse_example), "
          "32 int64 + 7 float + 2 float FixedLenFeature")
    print(f"# machine: {cpu_model()}, {os.cpu_count()} hardware threads, {platform.system()} "
          f"{platform.release()}")
    print(f"# tensorflow {tf.__version__}, python {platform.python_version()}")
    print(f"# threads {args.threads} (intra/inter-op, tf.data pool, num_parallel_calls); batch "
          f"{args.batch}; runs: 1 warm-up + {args.runs} timed, median")

    def make_dataset(path, compression):
        dataset = tf.data.TFRecordDataset(path, compression_type=compression)
        dataset = dataset.batch(args.batch)
        dataset = dataset.map(lambda records: tf.io.parse_example(records, spec),
                              num_parallel_calls=args.threads)
        options = tf.data.Options()
        options.threading.private_threadpool_size = args.threads
        options.threading.max_intra_op_parallelism = 1
        options.autotune.enabled = False  # no extra prefetch threads beyond what is asked for
        return dataset.with_options(options)

    def read(path, compression):
        samples, label_sum, id_sum = 0, 0.0, 0
        for parsed in make_dataset(path, compression):
            income = parsed["income"].numpy()
            samples += income.shape[0]
            label_sum += float(income.sum()) + float(parsed["never_married"].numpy().sum())
            id_sum += int(parsed["slot_0"].numpy().sum())
        return samples, label_sum, id_sum

    rows = []
    print(f"{'format':<24} {'threads':>8} {'file_MB':>10} {'samples/s':>12} "
          f"{'samples/cpu_s':>14} {'median_s':>10}")
    for name, file, compression in CASES:
        path = os.path.join(args.folder, file)
        read(path, compression)  # warm-up: file in the page cache, graph traced
        seconds, cpu_seconds = [], []
        for _ in range(args.runs):
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            samples, label_sum, id_sum = read(path, compression)
            seconds.append(time.perf_counter() - wall_start)
            cpu_seconds.append(time.process_time() - cpu_start)
        median, median_cpu = statistics.median(seconds), statistics.median(cpu_seconds)
        rows.append({"format": name, "threads": args.threads, "file_bytes": os.path.getsize(path),
                     "median_seconds": median, "median_cpu_seconds": median_cpu,
                     "samples_per_second": samples / median,
                     "samples_per_cpu_second": samples / median_cpu, "samples": samples,
                     "label_sum": label_sum, "slot_0_id_sum": id_sum})
        print(f"{name:<24} {args.threads:>8} {os.path.getsize(path) / 1e6:>10.2f} "
              f"{samples / median:>12.0f} {samples / median_cpu:>14.0f} {median:>10.4f}")
    print(f"# read per run: {rows[0]['samples']} samples, label sum {rows[0]['label_sum']:.1f}, "
          f"slot_0 id sum {rows[0]['slot_0_id_sum']} (io_bench prints its own to compare)")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"benchmark": "tf_data_peer", "cpu": cpu_model(),
                       "tensorflow": tf.__version__, "threads": args.threads,
                       "batch": args.batch, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
