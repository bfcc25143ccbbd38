#pragma once
// Finds a request's connection socket so a handler can notice the client hanging up while a
// non-streaming generation runs. Debian's cpp-httplib (0.11) gives a handler no socket and no
// "connection closed" check, so the socket is found by its two ends: the one accepted socket whose
// local port is local_port and whose peer is remote_addr:remote_port (among /proc/self/fd).
//
// NOTE: the socket stays the handler's until it returns (httplib closes it afterwards), so the
// fd cannot be reused under a handler that polls it.
#include <string>

namespace troupe::http {

// -1 when no such socket (then hang-ups go unnoticed; nothing else changes).
int find_connection_socket(const std::string& remote_addr, int remote_port, int local_port);
// True when the peer closed its end (EOF or an error); pending request bytes do not count.
bool is_peer_closed(int fd);

}  // namespace troupe::http
