// Command-line flags shared by the benchmarks: the "--flag value" loop with --help and the
// errors every bench gives, and comma-separated lists.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace drgrad::bench {

// Calls handle(flag, value) for each "--flag value" pair of argv. "--help" or "-h" prints
// `usage` and exits 0; a flag without a value, or one that handle() does not know (it returns
// false), throws std::invalid_argument followed by the usage.
template <typename Handle>
void parse_flags(int argc, char** argv, const char* usage, Handle&& handle) {
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::cout << usage;
      std::exit(0);
    }
    if (i + 1 >= argc) throw std::invalid_argument("flag " + flag + " needs a value\n" + usage);
    if (!handle(flag, std::string(argv[++i]))) {
      throw std::invalid_argument("unknown flag " + flag + "\n" + usage);
    }
  }
}

// The non-empty items of a comma-separated list.
inline std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream stream(text);
  for (std::string item; std::getline(stream, item, ',');) {
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

inline std::vector<std::int64_t> integer_list(const std::string& text) {
  std::vector<std::int64_t> values;
  for (const std::string& item : split_list(text)) values.push_back(std::stoll(item));
  return values;
}

}  // namespace drgrad::bench
