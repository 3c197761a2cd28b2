// Reads the TOML file that says how tf.train.Example features map onto dense features, sparse
// slots and labels (data.example_schema), for training directly from TFRecord files.
//
//   dense = ["I1", "I2"]            # float features with one value each
//   labels = ["label"]
//   missing_dense_value = 0.0       # optional
//   [[sparse]]
//   name = "C1"                     # an int64 or bytes feature
//   vocabulary_size = 1000          # ids are reduced modulo this
//   encoding = "auto"               # auto | int64 | hash
#pragma once

#include <string>

#include "io/example/example_batch_decoder.h"

namespace drgrad::engine {

// Throws ConfigError naming the file, the key and its line.
io::ExampleMapping load_example_mapping(const std::string& path);

}  // namespace drgrad::engine
