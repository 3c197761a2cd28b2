#!/usr/bin/env python3
# Writes the TensorFlow-made fixtures of tests/io/tfrecord_interop_test.cc: 100 tf.train.Example
# records (id: int64 [i, -i]; x: float [i / 2]; s: bytes ["v<i>"]; e: empty float list), once per
# TFRecordOptions compression. Needs TensorFlow (pip install tensorflow-cpu); the tests do not.
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import tensorflow as tf  # noqa: E402

folder = os.path.dirname(os.path.abspath(__file__))
for compression, suffix in (("", "none"), ("GZIP", "gzip"), ("ZLIB", "zlib")):
    path = os.path.join(folder, f"tensorflow_written_{suffix}.tfrecord")
    options = tf.io.TFRecordOptions(compression_type=compression)
    with tf.io.TFRecordWriter(path, options=options) as writer:
        for i in range(100):
            feature = {
                "id": tf.train.Feature(int64_list=tf.train.Int64List(value=[i, -i])),
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=[i * 0.5])),
                "s": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"v%d" % i])),
                "e": tf.train.Feature(float_list=tf.train.FloatList(value=[])),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    print(f"wrote {path} with TensorFlow {tf.__version__}", file=sys.stderr)
