#pragma once
// Command-line pieces the benchmark programs share.
#include <cstdint>
#include <string>
#include <vector>

namespace troupe::bench {

// "1,8,64" -> {1, 8, 64}.
std::vector<int64_t> parse_int_list(const std::string& text);

// A folder under the temp directory named `name` holding the DeepSeek config.json `config_json`
// with fewer layers: the first `dense` dense, then `moe` MoE. "" when the file is unreadable.
std::string reduced_deepseek_config_dir(const std::string& config_json, int64_t dense, int64_t moe,
                                        const std::string& name);

}  // namespace troupe::bench
