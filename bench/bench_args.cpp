#include "bench/bench_args.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace troupe::bench {

std::vector<int64_t> parse_int_list(const std::string& text) {
  std::vector<int64_t> values;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) values.push_back(std::atoll(item.c_str()));
  return values;
}

std::string reduced_deepseek_config_dir(const std::string& config_json, int64_t dense, int64_t moe,
                                        const std::string& name) {
  std::ifstream in(config_json);
  nlohmann::json config = nlohmann::json::parse(in, nullptr, false);
  if (config.is_discarded()) return "";
  config["num_hidden_layers"] = dense + moe;
  config["first_k_dense_replace"] = dense;
  const std::string dir = (std::filesystem::temp_directory_path() / name).string();
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << config.dump(2);
  return dir;
}

}  // namespace troupe::bench
