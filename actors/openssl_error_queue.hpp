#pragma once

// See openssl_error_queue.cpp: troupe's own SSL_read/SSL_write/SSL_accept/SSL_connect clear
// OpenSSL's per-thread error queue before each call, so one peer's failed handshake cannot end
// another peer's connection (a flaw of CAF 0.17's openssl module).

namespace troupe {

// True when the process's SSL_read is troupe's (the definitions were linked and exported).
bool openssl_error_queue_is_cleared();

}  // namespace troupe
