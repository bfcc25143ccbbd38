#pragma once
// Command-line and text I/O shared by the examples (not part of the API).
//   flags:   --name value, or --name alone for a switch
//   inputs:  one 1-D tensor per line, values separated by spaces; blank lines are skipped
//   outputs: `output K V0 V1 ...` per result on stdout, values with 9 significant digits
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "troupe/api.hpp"

namespace examples {

using Flags = std::map<std::string, std::string>;

inline Flags parse_flags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    std::string name = argv[i];
    if (name.rfind("--", 0) != 0) continue;
    name = name.substr(2);
    const bool has_value = i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0;
    flags[name] = has_value ? argv[++i] : "";
  }
  return flags;
}

inline std::string flag(const Flags& flags, const std::string& name, const std::string& fallback) {
  auto it = flags.find(name);
  return it == flags.end() ? fallback : it->second;
}

inline int64_t int_flag(const Flags& flags, const std::string& name, int64_t fallback) {
  auto it = flags.find(name);
  return it == flags.end() ? fallback : std::strtoll(it->second.c_str(), nullptr, 10);
}

inline std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  std::stringstream stream(text);
  for (std::string part; std::getline(stream, part, separator);)
    if (!part.empty()) parts.push_back(part);
  return parts;
}

inline troupe::Result<std::vector<troupe::api::Tensor>> read_inputs(const std::string& path) {
  std::ifstream file(path);
  if (!file) return troupe::make_error(troupe::ErrorCode::not_found, "cannot open input file '" + path + "'");
  std::vector<troupe::api::Tensor> inputs;
  int64_t line_number = 0;
  for (std::string line; std::getline(file, line);) {
    ++line_number;
    std::stringstream values(line);
    std::vector<float> data;
    for (std::string word; values >> word;) {
      char* end = nullptr;
      const float value = std::strtof(word.c_str(), &end);
      if (end == word.c_str() || *end != '\0')
        return troupe::make_error(troupe::ErrorCode::invalid_argument, path + ":" + std::to_string(line_number) +
                                                                           ": '" + word + "' is not a number");
      data.push_back(value);
    }
    if (data.empty()) continue;
    const auto n = static_cast<int64_t>(data.size());
    inputs.emplace_back(std::vector<int64_t>{n}, std::move(data));
  }
  return inputs;
}

inline void print_output(size_t index, const troupe::api::Tensor& tensor) {
  std::printf("output %zu", index);
  for (float value : tensor.data) std::printf(" %.9g", value);
  std::printf("\n");
  std::fflush(stdout);
}

inline int fail(const std::string& message) {
  std::fprintf(stderr, "error: %s\n", message.c_str());
  return 1;
}

}  // namespace examples
