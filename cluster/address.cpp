#include "cluster/address.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

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

Result<std::string> local_address_toward(const HostPort& peer) {
  const std::string what = "the local address toward " + peer.to_string();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(peer.port == 0 ? 9 : peer.port);
  if (const int rc = ::getaddrinfo(peer.host.c_str(), port.c_str(), &hints, &found); rc != 0)
    return make_error(ErrorCode::unavailable, what + ": cannot resolve '" + peer.host + "' (" + ::gai_strerror(rc) + ")");
  std::string last_error = "no address";
  for (addrinfo* at = found; at != nullptr; at = at->ai_next) {
    const int fd = ::socket(at->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    sockaddr_storage local{};
    socklen_t length = sizeof(local);
    const bool ok = ::connect(fd, at->ai_addr, at->ai_addrlen) == 0 &&
                    ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0;
    if (!ok) last_error = std::strerror(errno);
    ::close(fd);
    if (!ok) continue;
    char text[INET6_ADDRSTRLEN] = {};
    const void* address = local.ss_family == AF_INET6
                              ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6&>(local).sin6_addr)
                              : static_cast<const void*>(&reinterpret_cast<const sockaddr_in&>(local).sin_addr);
    if (::inet_ntop(local.ss_family, address, text, sizeof(text)) == nullptr) {
      last_error = std::strerror(errno);
      continue;
    }
    ::freeaddrinfo(found);
    return std::string(text);
  }
  ::freeaddrinfo(found);
  return make_error(ErrorCode::unavailable, what + ": " + last_error);
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
