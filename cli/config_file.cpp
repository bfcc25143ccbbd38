#include "cli/config_file.hpp"

#include <CLI/CLI.hpp>

#include <filesystem>

namespace troupe::cli {
namespace {

std::string config_path(const std::vector<std::string>& args) {
  for (size_t i = 2; i < args.size(); ++i) {
    if (args[i] == "--config" && i + 1 < args.size()) return args[i + 1];
    if (args[i].rfind("--config=", 0) == 0) return args[i].substr(9);
  }
  return "";
}

}  // namespace

Result<std::vector<std::string>> expand_config_file(std::vector<std::string> args) {
  const std::string path = config_path(args);
  if (path.empty()) return args;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    return make_error(ErrorCode::not_found, "--config: no such file: " + path);

  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_file(path);
  } catch (const std::exception& e) {
    return make_error(ErrorCode::invalid_argument, "--config " + path + ": " + e.what());
  }
  std::vector<std::string> flags;
  for (const auto& item : items) {
    if (!item.parents.empty())
      return make_error(ErrorCode::invalid_argument,
                        "--config " + path + ": sections are not used, found [" + item.parents.front() + "]");
    if (item.name == "config") continue;
    for (const auto& value : item.inputs) flags.push_back("--" + item.name + "=" + value);
  }
  args.insert(args.begin() + 2, flags.begin(), flags.end());
  return args;
}

}  // namespace troupe::cli
