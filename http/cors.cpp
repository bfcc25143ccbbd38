#include "http/cors.hpp"

#include <algorithm>

namespace troupe::http {
namespace {

std::string trimmed(const std::string& s) {
  size_t begin = s.find_first_not_of(" \t");
  if (begin == std::string::npos) return "";
  size_t end = s.find_last_not_of(" \t");
  return s.substr(begin, end - begin + 1);
}

}  // namespace

CorsPolicy::CorsPolicy(const std::string& allowed) {
  for (size_t at = 0; at <= allowed.size();) {
    size_t end = std::min(allowed.find(',', at), allowed.size());
    std::string origin = trimmed(allowed.substr(at, end - at));
    while (!origin.empty() && origin.back() == '/') origin.pop_back();  // "https://a.example/" = "https://a.example"
    if (origin == "*") any_ = true;
    else if (!origin.empty()) origins_.push_back(origin);
    at = end + 1;
  }
}

bool CorsPolicy::allows(const std::string& origin) const {
  if (origin.empty()) return false;
  return any_ || std::find(origins_.begin(), origins_.end(), origin) != origins_.end();
}

}  // namespace troupe::http
