#include "runtime/logging.hpp"

#include <mutex>

#include <spdlog/sinks/stdout_color_sinks.h>

namespace troupe::log {
namespace {

constexpr const char* kPattern = "%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [%n] %v";

std::mutex& registry_mutex() {
  static std::mutex mutex;
  return mutex;
}

spdlog::level::level_enum& current_level() {
  static spdlog::level::level_enum level = spdlog::level::info;
  return level;
}

}  // namespace

bool is_valid_level(const std::string& level_name) {
  return level_name == "off" || spdlog::level::from_str(level_name) != spdlog::level::off;
}

bool set_level(const std::string& level_name) {
  if (!is_valid_level(level_name)) return false;
  std::lock_guard lock(registry_mutex());
  current_level() = spdlog::level::from_str(level_name);
  spdlog::set_level(current_level());
  return true;
}

std::shared_ptr<spdlog::logger> get(const std::string& component) {
  std::lock_guard lock(registry_mutex());
  if (auto existing = spdlog::get(component)) return existing;
  auto logger = spdlog::stderr_color_mt(component);
  logger->set_pattern(kPattern);
  logger->set_level(current_level());
  return logger;
}

}  // namespace troupe::log
