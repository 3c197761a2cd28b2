// load_example_mapping: strict TOML reading of an Example feature mapping.
#include "engine/config/example_mapping_file.h"

#include <toml++/toml.h>

#include <set>

#include "engine/config/config.h"

namespace drgrad::engine {

namespace {
std::string where(const std::string& path, const toml::node& node) {
  return path + ":" + std::to_string(node.source().begin.line);
}

std::vector<std::string> string_list(const toml::table& table, const char* key,
                                     const std::string& path) {
  std::vector<std::string> values;
  const toml::node* node = table.get(key);
  if (node == nullptr) return values;
  const toml::array* array = node->as_array();
  if (array == nullptr) {
    throw ConfigError(where(path, *node) + ": '" + key + "' must be a list of feature names");
  }
  for (const auto& element : *array) {
    const auto text = element.value<std::string>();
    if (!text) {
      throw ConfigError(where(path, element) + ": '" + key + "' must hold strings only");
    }
    values.push_back(*text);
  }
  return values;
}
}  // namespace

io::ExampleMapping load_example_mapping(const std::string& path) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& error) {
    const auto& source = error.source();
    if (source.begin.line == 0) {
      throw ConfigError("cannot read example schema " + path + ": " +
                        std::string(error.description()) +
                        "; check data.example_schema points at an existing TOML file");
    }
    throw ConfigError(path + ":" + std::to_string(source.begin.line) + ":" +
                      std::to_string(source.begin.column) + ": " +
                      std::string(error.description()));
  }
  const std::set<std::string> known{"dense", "labels", "missing_dense_value", "sparse"};
  for (const auto& [key, node] : root) {
    if (!known.count(std::string(key.str()))) {
      throw ConfigError(where(path, node) + ": unknown key '" + std::string(key.str()) +
                        "' in the example schema; keys are dense, labels, "
                        "missing_dense_value and [[sparse]]");
    }
  }
  io::ExampleMapping mapping;
  mapping.schema.dense_features = string_list(root, "dense", path);
  mapping.schema.labels = string_list(root, "labels", path);
  if (mapping.schema.labels.empty()) {
    throw ConfigError(path + ": the example schema names no labels ('labels = [...]')");
  }
  if (const toml::node* node = root.get("missing_dense_value")) {
    const auto value = node->value<double>();
    if (!value) throw ConfigError(where(path, *node) + ": missing_dense_value must be a number");
    mapping.missing_dense_value = static_cast<float>(*value);
  }
  if (const toml::node* node = root.get("sparse")) {
    const toml::array* slots = node->as_array();
    if (slots == nullptr) {
      throw ConfigError(where(path, *node) +
                        ": 'sparse' must be an array of tables "
                        "([[sparse]])");
    }
    for (const auto& element : *slots) {
      const toml::table* slot = element.as_table();
      if (slot == nullptr) throw ConfigError(where(path, element) + ": [[sparse]] expected");
      io::SparseSlotSchema schema;
      io::SparseIdEncoding encoding = io::SparseIdEncoding::automatic;
      for (const auto& [key, value] : *slot) {
        const std::string name(key.str());
        if (name == "name" && value.is_string()) {
          schema.name = *value.value<std::string>();
        } else if (name == "vocabulary_size" && value.is_integer()) {
          schema.vocabulary_size = *value.value<std::int64_t>();
        } else if (name == "encoding" && value.is_string()) {
          const std::string text = *value.value<std::string>();
          if (text == "auto") {
            encoding = io::SparseIdEncoding::automatic;
          } else if (text == "int64") {
            encoding = io::SparseIdEncoding::int64_ids;
          } else if (text == "hash") {
            encoding = io::SparseIdEncoding::hashed_bytes;
          } else {
            throw ConfigError(where(path, value) + ": encoding '" + text +
                              "' is not one of auto, int64, hash");
          }
        } else {
          throw ConfigError(where(path, value) + ": unknown or mistyped key '" + name +
                            "' in [[sparse]]; keys are name (string), vocabulary_size "
                            "(integer), encoding (string)");
        }
      }
      if (schema.name.empty()) throw ConfigError(where(path, element) + ": [[sparse]] needs name");
      if (schema.vocabulary_size <= 0) {
        throw ConfigError(where(path, element) + ": sparse slot '" + schema.name +
                          "' needs a positive vocabulary_size");
      }
      mapping.schema.sparse_slots.push_back(schema);
      mapping.sparse_encodings.push_back(encoding);
    }
  }
  return mapping;
}

}  // namespace drgrad::engine
