#pragma once
// Shared by the tokenizer tests: the real tokenizers (loaded once) and the committed corpus.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "text/tokenizer.hpp"

namespace troupe::testing {

inline const std::vector<std::string> kTokenizerNames = {"deepseek_v3", "qwen3", "llama3_1"};

inline std::string tokenizer_dir(const std::string& name) {
  return std::string(TROUPE_SOURCE_DIR) + "/.cache/tokenizers/" + name;
}

inline std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The loaded tokenizer, or nullptr after a test failure explaining how to fetch the files.
inline const Tokenizer* real_tokenizer(const std::string& name) {
  static std::map<std::string, Tokenizer> loaded;
  const auto it = loaded.find(name);
  if (it != loaded.end()) return &it->second;
  if (!std::ifstream(tokenizer_dir(name) + "/tokenizer.json").good()) {
    ADD_FAILURE() << "missing " << tokenizer_dir(name) << "/tokenizer.json: run tools/fetch-tokenizers (or tools/test-setup)";
    return nullptr;
  }
  auto tokenizer = Tokenizer::load(tokenizer_dir(name));
  if (!tokenizer.ok()) {
    ADD_FAILURE() << name << ": " << tokenizer.error().message;
    return nullptr;
  }
  return &loaded.emplace(name, std::move(tokenizer.value())).first->second;
}

inline const std::vector<std::string>& corpus() {
  static const std::vector<std::string> texts = [] {
    const auto json = nlohmann::json::parse(read_text_file(std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/tokenizer/corpus.json"));
    return json.get<std::vector<std::string>>();
  }();
  return texts;
}

inline bool is_ascii(const std::string& text) {
  for (unsigned char c : text)
    if (c >= 0x80) return false;
  return true;
}

}  // namespace troupe::testing
