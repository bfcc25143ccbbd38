// `--config FILE`: the TOML reader (CLI11's) and troupe's splicing of its entries into argv.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "cli/config_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path =
      (std::filesystem::temp_directory_path() / ("troupe_fuzz_config_" + std::to_string(::getpid()) + ".toml")).string();
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), std::streamsize(size));
  (void)troupe::cli::expand_config_file({"troupe", "serve", "--config", path, "--port", "8000"});
  return 0;
}
