// config.json and generation_config.json readers. The input is config.json, optionally followed
// by "\n--generation--\n" and generation_config.json.
#include <cstddef>
#include <cstdint>
#include <string>

#include "runtime/model_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::string separator = "\n--generation--\n";
  const size_t at = input.find(separator);
  const std::string config = input.substr(0, at);
  const std::string generation = at == std::string::npos ? std::string() : input.substr(at + separator.size());
  (void)troupe::ModelConfig::parse(config, generation, "fuzz/config.json");
  return 0;
}
