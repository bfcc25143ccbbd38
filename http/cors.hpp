#pragma once
// CORS for browsers (--allowed-origins): which origins may call the API, and the headers that say
// so. A preflight (OPTIONS with Access-Control-Request-Method) from an allowed origin is answered
// 204 without the API key, as browsers send no credentials on it; any other origin gets 400, as
// Starlette's CORSMiddleware (vLLM's) answers. Answers to allowed origins carry
// Access-Control-Allow-Origin (the origin itself, or "*" when any is allowed).
#include <string>
#include <vector>

namespace troupe::http {

class CorsPolicy {
 public:
  // `allowed`: comma-separated origins ("https://a.example,https://b.example"), "*" for any, "" for none.
  explicit CorsPolicy(const std::string& allowed);

  bool is_enabled() const { return any_ || !origins_.empty(); }
  bool allows(const std::string& origin) const;
  // The Access-Control-Allow-Origin value for an allowed origin: "*" or the origin.
  std::string allow_origin_value(const std::string& origin) const { return any_ ? "*" : origin; }

  static constexpr const char* allow_methods = "GET, POST, OPTIONS";
  static constexpr const char* default_allow_headers = "Authorization, Content-Type, X-Request-Id";
  static constexpr const char* max_age_seconds = "600";

 private:
  bool any_ = false;
  std::vector<std::string> origins_;
};

}  // namespace troupe::http
