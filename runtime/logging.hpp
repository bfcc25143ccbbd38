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

// Sends every component's lines to `path` (appended) instead of stderr. False, with why in
// `error`, when the file cannot be opened. A write that fails later is told once on stderr; the
// process goes on (a full disk for logs never stops serving).
bool set_file(const std::string& path, std::string* error = nullptr);

// The logger of one component ("engine", "http", "cluster", ...), created on first use.
std::shared_ptr<spdlog::logger> get(const std::string& component);

}  // namespace troupe::log
