#pragma once
// The transformers oracle saved beside each fixture model (tools/make_fixtures.py): its prompts,
// greedy continuations, and (in oracle_logits.safetensors) the logits of every prompt position.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace troupe {

namespace fs = std::filesystem;

// The DeepSeek-V3 fixtures (tools/make_deepseek_fixtures.py): served by the CPU backend only
// (the CUDA backend refuses the architecture, so the GPU tests skip them); their tensor-parallel
// test is deepseek_tensor_parallel_test.cpp.
inline bool is_deepseek_fixture(const fs::path& dir) {
  return dir.filename().string().rfind("deepseek-v3", 0) == 0;
}

enum class FixtureSet {
  all,       // every architecture the CPU backend serves
  deepseek,  // the DeepSeek-V3 ones only
  dense,     // the others (Llama / Qwen2 / Qwen3): tensor_parallel_test and the GPU tests take these
};

// Every folder under tests/fixtures/models that has an oracle.json and belongs to `set`, sorted.
inline std::vector<std::string> fixture_dirs(FixtureSet set = FixtureSet::all) {
  std::vector<std::string> dirs;
  const fs::path root = fs::path(TROUPE_SOURCE_DIR) / "tests/fixtures/models";
  if (!fs::exists(root)) return dirs;
  for (const auto& entry : fs::directory_iterator(root)) {
    if (!fs::exists(entry.path() / "oracle.json")) continue;
    const bool deepseek = is_deepseek_fixture(entry.path());
    if (set == FixtureSet::all || (set == FixtureSet::deepseek) == deepseek) dirs.push_back(entry.path().string());
  }
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

struct Oracle {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::vector<int32_t>> greedy;
  int64_t max_new_tokens = 0;
};

inline Oracle read_oracle(const std::string& dir) {
  std::ifstream in(dir + "/oracle.json");
  std::stringstream text;
  text << in.rdbuf();
  const auto json = nlohmann::json::parse(text.str());
  Oracle oracle;
  oracle.prompts = json.at("prompts").get<std::vector<std::vector<int32_t>>>();
  oracle.greedy = json.at("greedy").get<std::vector<std::vector<int32_t>>>();
  oracle.max_new_tokens = json.at("max_new_tokens").get<int64_t>();
  return oracle;
}

}  // namespace troupe
