#include "cluster/address.hpp"

#include <cstdlib>

namespace troupe::cluster {

std::string HostPort::to_string() const {
  const bool ipv6 = host.find(':') != std::string::npos;
  return (ipv6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<HostPort> parse_host_port(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return make_error(ErrorCode::invalid_argument, "address '" + std::string(text) + "': " + why);
  };
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("missing ']' after the IPv6 host");
    host = text.substr(1, close - 1);
    if (close + 1 >= text.size() || text[close + 1] != ':') return bad("expected HOST:PORT");
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("expected HOST:PORT");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad("an IPv6 host needs brackets: [HOST]:PORT");
  }
  if (host.empty()) return bad("empty host");
  if (port.empty() || port.size() > 5) return bad("port must be a number in [1, 65535]");
  uint32_t value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return bad("port must be a number in [1, 65535]");
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value < 1 || value > 65535) return bad("port must be a number in [1, 65535]");
  return HostPort{std::string(host), static_cast<uint16_t>(value)};
}

EnvLookup process_env() {
  return [](const char* name) -> const char* { return std::getenv(name); };
}

std::optional<std::string> lws_join_address(const EnvLookup& env, int64_t port) {
  const char* leader = env("LWS_LEADER_ADDRESS");
  if (leader == nullptr || *leader == '\0') return std::nullopt;
  return std::string(leader) + ":" + std::to_string(port);
}

std::optional<int64_t> lws_worker_index(const EnvLookup& env) {
  const char* index = env("LWS_WORKER_INDEX");
  if (index == nullptr || *index == '\0') return std::nullopt;
  int64_t value = 0;
  for (const char* p = index; *p; ++p) {
    if (*p < '0' || *p > '9' || value > (int64_t{1} << 40)) return std::nullopt;
    value = value * 10 + (*p - '0');
  }
  return value;
}

}  // namespace troupe::cluster
