// Loading, overriding, validating and dumping a Config, all driven by the key table of
// config_fields.cc. Every user-facing failure is a ConfigError naming the key and where its
// value came from (file and line, or the --set text).
#include "engine/config/config.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "engine/config/field_table.h"

namespace drgrad::engine {

using config_internal::config_layout;
using config_internal::ConfigLayout;
using config_internal::describe_node;
using config_internal::FieldInfo;
using config_internal::TableArrayField;

namespace {

// Where each key's current value was set: "file.toml:12" or "--set key=value".
using Origins = std::map<std::string, std::string>;

struct ReadContext {
  std::string source_name;
  std::string override_text;  // set while reading the value of one --set
  Origins* origins = nullptr;

  std::string where(const toml::source_region& region) const {
    if (!override_text.empty()) return "--set " + override_text;
    return source_name + ":" + std::to_string(region.begin.line);
  }
  void record(const std::string& key, const std::string& location) const {
    if (origins != nullptr) (*origins)[key] = location;
  }
};

std::string join(const std::vector<std::string>& items, const std::string& separator = ", ") {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : separator) + item;
  return out;
}

std::string trim(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return "";
  const auto last = text.find_last_not_of(" \t\r\n");
  return std::string(text.substr(first, last - first + 1));
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string parent_of(const std::string& path) {
  const auto dot = path.rfind('.');
  return dot == std::string::npos ? "" : path.substr(0, dot);
}

std::string last_part(const std::string& path) {
  const auto dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

// Keys and tables a TOML table at `section` ("" for the root) may hold.
std::vector<std::string> keys_of_section(const std::string& section) {
  const ConfigLayout& layout = config_layout();
  const std::string prefix = section.empty() ? "" : section + ".";
  std::vector<std::string> names;
  auto add = [&](const std::string& key) {
    if (!key.starts_with(prefix)) return;
    const std::string rest = key.substr(prefix.size());
    const std::string name = rest.substr(0, rest.find('.'));
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  };
  for (const auto& entry : layout.order) {
    add(entry.is_array ? layout.arrays[entry.index]->key() : layout.fields[entry.index].key);
  }
  return names;
}

[[noreturn]] void throw_unknown_key(const std::string& where, const std::string& path,
                                    const std::string& section,
                                    const std::vector<std::string>& valid_names) {
  // Suggest the closest valid key when it is a plausible typo.
  const std::string name = last_part(path);
  std::string best;
  std::size_t best_distance = std::max<std::size_t>(2, name.size() / 3) + 1;
  for (const auto& candidate : valid_names) {
    const std::size_t distance = edit_distance(name, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = candidate;
    }
  }
  std::string message = where + ": unknown key '" + path + "'";
  if (!best.empty())
    message += "; did you mean '" + (section.empty() ? "" : section + ".") + best + "'?";
  // An entry of an array of tables ("tasks.0") reads as "[[tasks]]" in the file.
  const std::string index = last_part(section);
  const bool is_entry = !section.empty() && section.find('.') != std::string::npos &&
                        index.find_first_not_of("0123456789") == std::string::npos;
  if (section.empty()) {
    message += " Top-level tables are: ";
  } else if (is_entry) {
    message += " Keys of a [[" + parent_of(section) + "]] entry are: ";
  } else {
    message += " Keys of [" + section + "] are: ";
  }
  message += join(valid_names) + ". docs/config.md lists every key.";
  throw ConfigError(message);
}

[[noreturn]] void throw_read_problem(const std::string& where, const std::string& key,
                                     const std::string& problem) {
  throw ConfigError(where + ": key '" + key + "' " + problem);
}

void read_table(Config& config, const toml::table& table, const std::string& prefix,
                const ReadContext& context);

// Replaces the whole array `array` with the tables in `node`.
void read_array(Config& config, const TableArrayField& array, const toml::node& node,
                const std::string& location, const ReadContext& context) {
  const toml::array* items = node.as_array();
  const bool all_tables =
      items != nullptr && std::all_of(items->begin(), items->end(),
                                      [](const toml::node& item) { return item.is_table(); });
  if (!all_tables) {
    throw ConfigError(location + ": key '" + array.key() + "' expects an array of tables ([[" +
                      array.key() + "]] blocks, or [{name = \"...\"}] in --set), found " +
                      describe_node(node));
  }
  array.resize(config, 0);
  array.resize(config, items->size());
  if (context.origins != nullptr) {
    std::erase_if(*context.origins,
                  [&](const auto& item) { return item.first.starts_with(array.key() + "."); });
  }
  std::vector<std::string> field_names;
  for (const FieldInfo* field : array.fields()) field_names.push_back(field->key);
  for (std::size_t index = 0; index < items->size(); ++index) {
    const std::string element_path = array.key() + "." + std::to_string(index);
    for (auto&& [key, value] : *(*items)[index].as_table()) {
      const std::string name(key.str());
      const std::string path = element_path + "." + name;
      const auto found = std::find(field_names.begin(), field_names.end(), name);
      if (found == field_names.end()) {
        throw_unknown_key(context.where(key.source()), path, element_path, field_names);
      }
      const auto field = static_cast<std::size_t>(found - field_names.begin());
      const std::string where = context.where(value.source());
      if (auto problem = array.read(config, index, field, value)) {
        throw_read_problem(where, path, *problem);
      }
      context.record(path, where);
    }
  }
}

void read_table(Config& config, const toml::table& table, const std::string& prefix,
                const ReadContext& context) {
  const ConfigLayout& layout = config_layout();
  for (auto&& [key, node] : table) {
    const std::string path =
        prefix.empty() ? std::string(key.str()) : prefix + "." + std::string(key.str());
    const std::string where = context.where(node.source());
    if (const auto* field = layout.find_field(path)) {
      if (auto problem = field->read(config, node)) throw_read_problem(where, path, *problem);
      context.record(path, where);
    } else if (const auto* array = layout.find_array(path)) {
      read_array(config, *array, node, where, context);
    } else if (layout.is_section(path)) {
      if (!node.is_table()) {
        throw ConfigError(where + ": key '" + path + "' is a table ([" + path + "]) holding " +
                          join(keys_of_section(path)) + ", found " + describe_node(node));
      }
      read_table(config, *node.as_table(), path, context);
    } else {
      throw_unknown_key(context.where(key.source()), path, prefix, keys_of_section(prefix));
    }
  }
}

// Reads one --set value into a scalar field (of Config or of an array element): a value for a
// string-like key that did not parse as a TOML string is taken as its raw text.
const toml::node& value_for(const FieldInfo& field, const toml::node& parsed,
                            const toml::node& raw_text) {
  return field.string_like && !parsed.is_string() ? raw_text : parsed;
}

void apply_override_with_origins(Config& config, const std::string& text, Origins* origins) {
  const ConfigLayout& layout = config_layout();
  const std::string where = "--set " + text;
  const auto equals = text.find('=');
  if (equals == std::string::npos) {
    throw ConfigError(where + ": expected key=value, e.g. --set training.batch_size=256");
  }
  const std::string key = trim(std::string_view(text).substr(0, equals));
  const std::string value_text = trim(std::string_view(text).substr(equals + 1));
  if (key.empty()) {
    throw ConfigError(where + ": the key before '=' is empty; e.g. --set training.batch_size=256");
  }

  // The value as TOML; anything that is not a single valid TOML value is a plain string.
  const toml::value<std::string> raw_text(value_text);
  toml::table parsed_document;
  const toml::node* parsed = &raw_text;
  try {
    parsed_document = toml::parse("value = " + value_text, std::string_view("--set"));
    if (parsed_document.size() == 1 && parsed_document.get("value") != nullptr) {
      parsed = parsed_document.get("value");
    }
  } catch (const toml::parse_error&) {
  }

  Config updated = config;  // a failed override leaves `config` untouched
  Origins updated_origins = origins != nullptr ? *origins : Origins{};
  const ReadContext context{"", text, &updated_origins};
  auto commit = [&] {
    config = std::move(updated);
    if (origins != nullptr) *origins = std::move(updated_origins);
  };

  if (const auto* field = layout.find_field(key)) {
    if (auto problem = field->read(updated, value_for(*field, *parsed, raw_text))) {
      throw_read_problem(where, key, *problem);
    }
    if (auto violated = field->check(updated)) {
      throw ConfigError(where + ": key '" + key + "' = " + *field->write(updated) +
                        " is invalid: " + *violated);
    }
    updated_origins[key] = where;
    return commit();
  }
  if (const auto* array = layout.find_array(key)) {
    read_array(updated, *array, *parsed, where, context);
    return commit();
  }
  for (const auto& array : layout.arrays) {
    const std::string prefix = array->key() + ".";
    if (!key.starts_with(prefix)) continue;
    const std::string rest = key.substr(prefix.size());
    const auto dot = rest.find('.');
    const std::string index_text = rest.substr(0, dot);
    const std::string usage = "write " + array->key() + ".N.<key> with N a 0-based index, e.g. " +
                              array->key() + ".0." + array->fields().front()->key + "=...";
    if (dot == std::string::npos || index_text.empty() ||
        !std::all_of(index_text.begin(), index_text.end(),
                     [](char c) { return c >= '0' && c <= '9'; })) {
      throw ConfigError(where + ": cannot read '" + key + "'; " + usage);
    }
    const std::size_t index = std::stoul(index_text);
    const std::size_t size = array->size(updated);
    if (index > size) {
      throw ConfigError(where + ": index " + index_text + " is past the end of " + array->key() +
                        ", which has " + std::to_string(size) +
                        " entries (indices start at 0; index " + std::to_string(size) +
                        " appends a new entry)");
    }
    if (index == size) array->resize(updated, size + 1);
    const std::string name = rest.substr(dot + 1);
    std::vector<std::string> field_names;
    for (const FieldInfo* field : array->fields()) field_names.push_back(field->key);
    const auto found = std::find(field_names.begin(), field_names.end(), name);
    if (found == field_names.end()) {
      throw_unknown_key(where, key, array->key() + "." + index_text, field_names);
    }
    const auto field = static_cast<std::size_t>(found - field_names.begin());
    if (auto problem = array->read(updated, index, field,
                                   value_for(*array->fields()[field], *parsed, raw_text))) {
      throw_read_problem(where, key, *problem);
    }
    if (auto violated = array->check(updated, index, field)) {
      throw ConfigError(where + ": key '" + key + "' = " + *array->write(updated, index, field) +
                        " is invalid: " + *violated);
    }
    updated_origins[key] = where;
    return commit();
  }
  if (layout.is_section(key)) {
    if (!parsed->is_table()) {
      throw ConfigError(where + ": '" + key + "' is a table; set one of its keys (" +
                        join(keys_of_section(key)) + "), e.g. --set " + key + "." +
                        keys_of_section(key).front() + "=...");
    }
    read_table(updated, *parsed->as_table(), key, context);
    return commit();
  }
  throw_unknown_key(where, key, parent_of(key), keys_of_section(parent_of(key)));
}

void validate_with_origins(const Config& config, const Origins* origins) {
  const ConfigLayout& layout = config_layout();
  // Where `key` was set; for a key of an array entry that was never set itself (an entry
  // appended by --set tasks.2.loss_weight=...), where another key of that entry was set.
  auto located = [origins](const std::string& key) {
    if (origins == nullptr) return std::string();
    if (const auto found = origins->find(key); found != origins->end()) return found->second + ": ";
    const std::string index = last_part(parent_of(key));
    if (index.empty() || index.find_first_not_of("0123456789") != std::string::npos)
      return std::string();
    const std::string entry = parent_of(key) + ".";
    for (const auto& [other_key, origin] : *origins) {
      if (other_key.starts_with(entry)) return origin + ": ";
    }
    return std::string();
  };
  auto fail = [&](const std::string& key, const std::string& message) {
    throw ConfigError(located(key) + message);
  };

  for (const auto& field : layout.fields) {
    if (auto violated = field.check(config)) {
      fail(field.key,
           "key '" + field.key + "' = " + *field.write(config) + " is invalid: " + *violated);
    }
  }
  for (const auto& array : layout.arrays) {
    for (std::size_t index = 0; index < array->size(config); ++index) {
      for (std::size_t field = 0; field < array->fields().size(); ++field) {
        if (auto violated = array->check(config, index, field)) {
          const std::string key =
              array->key() + "." + std::to_string(index) + "." + array->fields()[field]->key;
          fail(key, "key '" + key + "' = " + array->write(config, index, field).value_or("") +
                        " is invalid: " + *violated);
        }
      }
    }
  }

  // Relations between keys.
  if (config.data.source == DataSource::kFiles && config.data.train_files.empty()) {
    fail("data.source",
         "data.source = \"files\" needs data.train_files: list the training files, e.g. "
         "train_files = [\"data/train.tfrecord\"]");
  }
  {
    const std::string& name = config.strategy.name;
    for (const char* later : {"snr", "ac_mmoe", "nash_mtl", "adatask", "igbv2"}) {
      if (name == later) {
        fail("strategy.name", "strategy \"" + name +
                                  "\" is not yet supported (docs/multitask.md lists what is); "
                                  "use none, drgrad, pcgrad or cagrad");
      }
    }
    if (name != "none" && name != "drgrad" && name != "pcgrad" && name != "cagrad") {
      fail("strategy.name",
           "unknown strategy \"" + name + "\"; use none, drgrad, pcgrad or cagrad");
    }
    if (name == "drgrad" && !config.model.split_towers) {
      fail("strategy.name",
           "strategy \"drgrad\" routes between split towers: set model.split_towers = true");
    }
    if (!config.model.personal_slots.empty() && !config.model.split_towers) {
      fail("model.personal_slots",
           "the personalized gate acts on the shared representation of split towers: set "
           "model.split_towers = true");
    }
  }
  if (config.training.steps == 0 && config.training.epochs == 0) {
    fail("training.epochs",
         "training.epochs = 0 with training.steps = 0 trains nothing; set epochs >= 1 or "
         "steps > 0");
  }
  if (config.model.backbone == BackboneKind::kSharedBottom && config.model.bottom_units.empty()) {
    fail("model.bottom_units",
         "model.backbone = \"shared_bottom\" needs at least one layer in model.bottom_units");
  }
  if (config.model.backbone != BackboneKind::kSharedBottom && config.model.expert_units.empty()) {
    fail("model.expert_units",
         "model.backbone = \"mmoe\" or \"ple\" needs at least one layer in model.expert_units");
  }
  for (std::size_t i = 0; i < config.tasks.size(); ++i) {
    const std::string prefix = "tasks." + std::to_string(i) + ".";
    const TaskConfig& task = config.tasks[i];
    for (std::size_t j = 0; j < i; ++j) {
      if (config.tasks[j].name == task.name) {
        fail(prefix + "name", "task name '" + task.name + "' is used by tasks." +
                                  std::to_string(j) + " and tasks." + std::to_string(i) +
                                  "; task names must be unique");
      }
    }
    if (task.type == TaskType::kRegression && task.positive_weight != 1.0) {
      fail(prefix + "positive_weight",
           "key '" + prefix + "positive_weight' applies to binary tasks only, but task '" +
               task.name + "' is a regression; remove it or set type = \"binary\"");
    }
  }
  for (std::size_t i = 0; i < config.features.slots.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (config.features.slots[j].name == config.features.slots[i].name) {
        const std::string key = "features.slot." + std::to_string(i) + ".name";
        fail(key, "slot '" + config.features.slots[i].name +
                      "' is overridden twice (features.slot." + std::to_string(j) +
                      " and features.slot." + std::to_string(i) +
                      "); merge the two [[features.slot]] blocks");
      }
    }
  }
}

}  // namespace

Config config_from_toml_string(std::string_view text, std::string_view source_name,
                               const std::vector<std::string>& overrides) {
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& error) {
    throw ConfigError(std::string(source_name) + ":" + std::to_string(error.source().begin.line) +
                      ":" + std::to_string(error.source().begin.column) +
                      ": TOML syntax error: " + std::string(error.description()) +
                      "; fix the file there (TOML syntax: https://toml.io/en/v1.0.0)");
  }
  Config config;
  Origins origins;
  read_table(config, root, "", ReadContext{std::string(source_name), "", &origins});
  for (const auto& override_text : overrides) {
    apply_override_with_origins(config, override_text, &origins);
  }
  finalize_config(config);
  validate_with_origins(config, &origins);
  return config;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (!fs::exists(path, error)) {
    throw ConfigError("config file '" + path + "' not found (looked from " +
                      fs::current_path(error).string() +
                      "); check the path, or start from an example such as "
                      "configs/demo_mmoe.toml");
  }
  if (fs::is_directory(path, error)) {
    throw ConfigError("config path '" + path + "' is a directory; pass a .toml file");
  }
  std::ifstream file(path, std::ios::binary);
  std::ostringstream contents;
  contents << file.rdbuf();
  if (!file && !file.eof()) {
    throw ConfigError("cannot read config file '" + path + "': " + std::strerror(errno));
  }
  return config_from_toml_string(contents.str(), path, overrides);
}

void apply_override(Config& config, const std::string& key_equals_value) {
  apply_override_with_origins(config, key_equals_value, nullptr);
}

void finalize_config(Config& config) {
  for (auto& task : config.tasks) {
    if (task.label.empty()) task.label = task.name;
  }
}

void validate_config(const Config& config) {
  validate_with_origins(config, nullptr);
}

std::string to_toml(const Config& config) {
  const ConfigLayout& layout = config_layout();
  std::string out =
      "# drgrad configuration: the effective values of a run (docs/config.md describes each "
      "key).\n";
  std::string section;
  for (const auto& entry : layout.order) {
    if (!entry.is_array) {
      const auto& field = layout.fields[entry.index];
      const std::string field_section = parent_of(field.key);
      if (field_section != section) {
        section = field_section;
        out += "\n[" + section + "]\n";
      }
      out += "# " + field.doc + "\n" + last_part(field.key) + " = " + *field.write(config) + "\n";
      continue;
    }
    const auto& array = *layout.arrays[entry.index];
    section.clear();
    const std::size_t size = array.size(config);
    if (size == 0) out += "\n# [[" + array.key() + "]]: none (" + array.doc() + ")\n";
    for (std::size_t index = 0; index < size; ++index) {
      out += "\n[[" + array.key() + "]]\n";
      for (std::size_t field = 0; field < array.fields().size(); ++field) {
        if (auto text = array.write(config, index, field)) {
          out += array.fields()[field]->key + " = " + *text + "\n";
        }
      }
    }
  }
  return out;
}

std::vector<std::string> config_keys() {
  return config_layout().all_keys();
}

std::string config_reference_markdown() {
  const ConfigLayout& layout = config_layout();
  std::string out = "| key | type | default | meaning |\n|---|---|---|---|\n";
  auto row = [&out](const std::string& key, const FieldInfo& field) {
    out += "| `" + key + "` | " + field.type_name + " | `" + field.default_text + "` | " +
           field.doc + " |\n";
  };
  for (const auto& entry : layout.order) {
    if (!entry.is_array) {
      row(layout.fields[entry.index].key, layout.fields[entry.index]);
      continue;
    }
    const auto& array = *layout.arrays[entry.index];
    for (const FieldInfo* field : array.fields()) row(array.key() + ".N." + field->key, *field);
  }
  return out;
}

}  // namespace drgrad::engine
