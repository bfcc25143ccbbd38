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

bool is_authorized(std::string_view authorization_header, std::string_view api_key) {
  if (api_key.empty()) return true;
  constexpr std::string_view kPrefix = "Bearer ";
  if (authorization_header.size() < kPrefix.size()) return false;
  std::string_view scheme = authorization_header.substr(0, kPrefix.size());
  bool scheme_ok = scheme == kPrefix || scheme == "bearer ";
  bool key_ok = constant_time_equals(authorization_header.substr(kPrefix.size()), api_key);
  return scheme_ok && key_ok;
}

}  // namespace troupe::http
