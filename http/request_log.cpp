#include "http/request_log.hpp"

#include <openssl/sha.h>

#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>

#include "runtime/logging.hpp"

namespace troupe::http {
namespace {

using nlohmann::json;

std::string milliseconds(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", ms);
  return buf;
}

// ISO 8601 in UTC with milliseconds: 2026-12-02T14:55:30.123Z.
std::string utc_time(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  std::time_t seconds = std::time_t(ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, int(ms % 1000));
  return buf;
}

// A value of the text format: bare when it is a plain word, else a JSON string, so a client's
// model name or request id cannot forge a field or a line.
std::string text_value(const std::string& s) {
  bool bare = !s.empty();
  for (char c : s)
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) >= 0x7f) bare = false;
  return bare ? s : json(s).dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

std::string api_key_id(std::string_view key) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest);
  char hex[9];
  std::snprintf(hex, sizeof(hex), "%02x%02x%02x%02x", digest[0], digest[1], digest[2], digest[3]);
  return hex;
}

bool is_acceptable_request_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

std::string RequestLog::format(const RequestRecord& r) const {
  if (format_ == Format::json) {
    json line{{"time", utc_time(r.started_at)},
              {"request_id", r.request_id},
              {"client", r.client},
              {"key_id", r.key_id.empty() ? json(nullptr) : json(r.key_id)},
              {"method", r.method},
              {"path", r.path},
              {"model", r.model},
              {"prompt_tokens", r.num_prompt_tokens},
              {"completion_tokens", r.num_completion_tokens},
              {"ttft_ms", r.ttft_ms < 0 ? json(nullptr) : json(std::stod(milliseconds(r.ttft_ms)))},
              {"duration_ms", std::stod(milliseconds(r.duration_ms))},
              {"finish_reason", r.finish_reason.empty() ? json(nullptr) : json(r.finish_reason)},
              {"status", r.status}};
    if (!r.user.empty()) line["user"] = r.user;
    if (include_content_) {
      line["prompt"] = r.prompt;
      line["output"] = r.output;
    }
    return line.dump(-1, ' ', false, json::error_handler_t::replace);
  }
  // NOTE: the time is the log line's own prefix (the request's end); the JSON form carries its start.
  std::string out = "request_id=" + text_value(r.request_id);
  auto field = [&out](const char* name, const std::string& value) { out += std::string(" ") + name + "=" + value; };
  field("client", text_value(r.client));
  field("key_id", r.key_id.empty() ? "-" : text_value(r.key_id));
  field("method", text_value(r.method));
  field("path", text_value(r.path));
  field("model", r.model.empty() ? "-" : text_value(r.model));
  if (!r.user.empty()) field("user", text_value(r.user));
  field("prompt_tokens", std::to_string(r.num_prompt_tokens));
  field("completion_tokens", std::to_string(r.num_completion_tokens));
  field("ttft_ms", r.ttft_ms < 0 ? "-" : milliseconds(r.ttft_ms));
  field("duration_ms", milliseconds(r.duration_ms));
  field("finish_reason", r.finish_reason.empty() ? "-" : text_value(r.finish_reason));
  field("status", std::to_string(r.status));
  if (include_content_) {
    field("prompt", text_value(r.prompt));
    field("output", text_value(r.output));
  }
  return out;
}

void RequestLog::write(const RequestRecord& record) const {
  // JSON lines are whole JSON objects: their logger prints the message alone.
  static const auto text_logger = log::get("request");
  static const auto json_logger = [] {
    auto logger = log::get("request_json");
    logger->set_pattern("%v");
    return logger;
  }();
  (format_ == Format::json ? json_logger : text_logger)->info(format(record));
}

}  // namespace troupe::http
