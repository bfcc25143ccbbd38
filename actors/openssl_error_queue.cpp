// OpenSSL keeps one error queue per thread, and SSL_get_error() reads it: a stale entry turns the
// next connection's harmless "would block" into a fatal error. CAF 0.17's openssl module calls
// SSL_read/SSL_write without clearing the queue, so one failed handshake on the cluster port (a
// plaintext or wrongly signed peer, a port scan) used to drop every joined worker on the same
// multiplexer thread. These definitions interpose on libssl's: each clears the calling thread's
// queue, then calls the real function (what BoringSSL does at every I/O entry point). They also
// cover cpp-httplib's HTTPS, where the same holds.
#include "actors/openssl_error_queue.hpp"

#include <dlfcn.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

namespace {

template <class Fn>
Fn real(const char* name) {
  return reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
}

}  // namespace

extern "C" {

int SSL_read(SSL* ssl, void* buf, int num) {
  static const auto next = real<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return next(ssl, buf, num);
}

int SSL_write(SSL* ssl, const void* buf, int num) {
  static const auto next = real<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return next(ssl, buf, num);
}

int SSL_accept(SSL* ssl) {
  static const auto next = real<int (*)(SSL*)>("SSL_accept");
  ERR_clear_error();
  return next(ssl);
}

int SSL_connect(SSL* ssl) {
  static const auto next = real<int (*)(SSL*)>("SSL_connect");
  ERR_clear_error();
  return next(ssl);
}

}  // extern "C"

namespace troupe {

bool openssl_error_queue_is_cleared() {
  // The interposition took: libssl's SSL_read resolves to this file's.
  return ::dlsym(RTLD_DEFAULT, "SSL_read") == reinterpret_cast<void*>(&SSL_read);
}

}  // namespace troupe
