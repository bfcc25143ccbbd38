#pragma once
// Cluster addresses: `HOST:PORT` (IPv6 as `[::1]:7400`) and LeaderWorkerSet environment defaults.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "runtime/result.hpp"

namespace troupe::cluster {

struct HostPort {
  std::string host;
  uint16_t port = 0;
  std::string to_string() const;
};

// Parses `HOST:PORT`; the error names the text and what is wrong with it.
Result<HostPort> parse_host_port(std::string_view text);

// The numeric address of this machine's interface that routes to `peer` (a UDP connect, which sends
// nothing, then getsockname): the address a worker advertises for its tensor listener, since that
// interface reaches the head and so, most likely, the other workers. The host name is no substitute:
// it often resolves to 127.0.0.1 (Debian's /etc/hosts), which other machines or network namespaces
// cannot reach. Errors when `peer` does not resolve or no route leads to it.
Result<std::string> local_address_toward(const HostPort& peer);

// Reads one environment variable; nullptr when unset. Tests pass their own.
using EnvLookup = std::function<const char*(const char*)>;
EnvLookup process_env();

// `$LWS_LEADER_ADDRESS:port` when LWS_LEADER_ADDRESS is set and not empty.
std::optional<std::string> lws_join_address(const EnvLookup& env, int64_t port);
// `$LWS_WORKER_INDEX` when it is a non-negative integer.
std::optional<int64_t> lws_worker_index(const EnvLookup& env);

}  // namespace troupe::cluster
