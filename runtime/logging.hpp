#pragma once
// One-line logs with time, level and component: `2026-11-24 21:40:00.123 info [http] listening on :8000`.
#include <memory>
#include <string>

#include <spdlog/spdlog.h>

namespace troupe::log {

// Sets the level of every component logger ("trace", "debug", "info", "warn", "error", "off").
// Returns false for an unknown level name.
bool set_level(const std::string& level_name);
bool is_valid_level(const std::string& level_name);

// The logger of one component ("engine", "http", "cluster", ...), created on first use.
std::shared_ptr<spdlog::logger> get(const std::string& component);

}  // namespace troupe::log
