#pragma once
// One log line per finished HTTP request (the access log), text or JSON, written through the
// `request` logger. Never holds an API key: only api_key_id(), a truncated SHA-256 of it.
// Prompts and outputs appear only when the server runs with --log-requests-content.
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace troupe::http {

struct RequestRecord {
  std::chrono::system_clock::time_point started_at{};
  std::string request_id;  // X-Request-Id when the client sent one, else generated
  std::string client;      // "address:port"
  std::string key_id;      // api_key_id() of the key used; "" when auth is off
  std::string method;
  std::string path;
  std::string model;  // "" when the body did not parse
  std::string user;   // the request's `user` field (first 128 bytes); "" when absent
  int64_t num_prompt_tokens = 0;
  int64_t num_completion_tokens = 0;
  double ttft_ms = -1.0;  // -1: no token came
  double duration_ms = 0.0;
  std::string finish_reason;  // stop | length | abort | error; "" when nothing was generated
  int status = 0;
  std::string prompt;  // only logged with include_content
  std::string output;  // only logged with include_content
};

// First 8 hex digits of SHA-256(key): names a key in logs without revealing it.
std::string api_key_id(std::string_view key);

// A client's X-Request-Id is echoed back and logged, so it is bounded (128 bytes) and limited to
// printable ASCII; anything else is replaced by a generated id.
bool is_acceptable_request_id(std::string_view id);

class RequestLog {
 public:
  enum class Format { text, json };
  RequestLog(Format format, bool include_content) : format_(format), include_content_(include_content) {}
  // "text" or "json"; anything else is text (Config::validate rejects it first).
  static Format parse_format(std::string_view name) { return name == "json" ? Format::json : Format::text; }

  // The line without a newline. Text: `key=value` pairs, strings quoted when they need it.
  std::string format(const RequestRecord& record) const;
  // Logs format(record) at info level on the `request` logger.
  void write(const RequestRecord& record) const;

 private:
  Format format_;
  bool include_content_;
};

}  // namespace troupe::http
