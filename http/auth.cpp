#include "http/auth.hpp"

#include <cstddef>

namespace troupe::http {

bool constant_time_equals(std::string_view a, std::string_view b) {
  // NOTE: loop over the expected length so a wrong guess's length leaks nothing more.
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < b.size(); ++i) {
    unsigned char ca = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    diff |= static_cast<unsigned char>(ca ^ static_cast<unsigned char>(b[i]));
  }
  return diff == 0;
}

std::vector<std::string> split_api_keys(std::string_view api_keys) {
  std::vector<std::string> keys;
  size_t at = 0;
  while (at < api_keys.size()) {
    size_t end = api_keys.find(',', at);
    if (end == std::string_view::npos) end = api_keys.size();
    if (end > at) keys.emplace_back(api_keys.substr(at, end - at));
    at = end + 1;
  }
  return keys;
}

std::string_view bearer_token(std::string_view authorization_header) {
  constexpr std::string_view kPrefix = "Bearer ";
  if (authorization_header.size() < kPrefix.size()) return {};
  std::string_view scheme = authorization_header.substr(0, kPrefix.size());
  if (scheme != kPrefix && scheme != "bearer ") return {};
  return authorization_header.substr(kPrefix.size());
}

bool is_authorized(std::string_view authorization_header, std::string_view api_keys) {
  if (api_keys.empty()) return true;
  std::string_view token = bearer_token(authorization_header);
  bool any = false;
  for (const std::string& key : split_api_keys(api_keys)) any |= constant_time_equals(token, key);
  return any && !token.empty();
}

}  // namespace troupe::http
