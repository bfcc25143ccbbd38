#include "pipeline/tensor_channel.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <map>
#include <thread>
#include <vector>

namespace troupe {
namespace {

using Clock = UcxContext::Clock;
using std::chrono::milliseconds;

constexpr uint64_t kHeaderBit = uint64_t{1} << 63;
constexpr uint64_t kHandshakeTag = ~uint64_t{0};  // header space, user tag 2^63 - 1
constexpr uint64_t kFullMask = ~uint64_t{0};
constexpr uint64_t kMagic = 0x31534E4554505254ull;  // "TRPTENS1"
constexpr milliseconds kCloseGrace{1000};
constexpr milliseconds kDestructorFlush{100};
constexpr milliseconds kGoodbyeTimeout{100};

struct Header {
  uint64_t magic = kMagic;
  uint64_t num_bytes = 0;
};

std::string tag_name(uint64_t tag) { return "tag " + std::to_string(tag); }

// Resolves host:port into a socket address (IPv4 or IPv6). "" and "0.0.0.0" mean any.
Result<sockaddr_storage> resolve(const std::string& host, uint16_t port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  if (passive) hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  const char* node = host.empty() ? nullptr : host.c_str();
  const int rc = getaddrinfo(node, service.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    return make_error(ErrorCode::invalid_argument,
                      "cannot resolve host '" + host + "': " + gai_strerror(rc));
  }
  sockaddr_storage address{};
  std::memcpy(&address, found->ai_addr, found->ai_addrlen);
  freeaddrinfo(found);
  return address;
}

uint16_t port_of(const sockaddr_storage& address) {
  if (address.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(address).sin_port);
  if (address.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(address).sin6_port);
  return 0;
}

bool peer_failed(void* arg);

}  // namespace

// ---------------------------------------------------------------------------------------------
// Channel state. Lives behind a unique_ptr so the endpoint's error callback has a stable address.
struct TensorChannel::Impl {
  std::shared_ptr<UcxContext> ucx;
  ucp_ep_h ep = nullptr;
  ucs_status_t peer_status = UCS_OK;  // set by the endpoint error callback
  std::string peer;
  std::string closed_reason;  // why this side closed the channel, when it did
  bool peer_said_goodbye = false;
  uint64_t max_chunk_bytes = uint64_t{1} << 30;
  std::map<uint64_t, std::deque<uint64_t>> pending_sizes;  // headers received, payload not yet
  // After the handshake a receive stays posted on kHandshakeTag: the peer's goodbye (close()).
  void* goodbye_request = nullptr;
  Header goodbye{};

  static void on_error(void* arg, ucp_ep_h, ucs_status_t status) {
    auto* self = static_cast<Impl*>(arg);
    if (self->peer_status == UCS_OK) self->peer_status = status;
  }

  ~Impl() {
    (void)close(kDestructorFlush);
    stop_goodbye_watch();
  }

  // Graceful close: flushes our sends and tells the peer (its calls then fail with unavailable).
  // Completion needs the peer to progress; after `timeout` the close goes on in the background
  // until this worker is destroyed.
  Status close(milliseconds timeout) {
    if (ep == nullptr) return Status::success();
    check_goodbye();
    if (peer_status != UCS_OK || !closed_reason.empty()) {
      close_endpoint(UCP_EP_CLOSE_FLAG_FORCE);
      stop_goodbye_watch();
      return Status::success();
    }
    // Goodbye first: an eager message needs no progress on the peer's side to leave, whereas
    // UCX's own disconnect notice waits for the peer to acknowledge our flush.
    const auto deadline = Clock::now() + timeout;
    Status said_goodbye = send_header(kHandshakeTag, 0, "close", timeout);
    closed_reason = "closed by this side";
    if (ep == nullptr) return said_goodbye;  // the goodbye failed and closed the endpoint
    ucp_request_param_t param{};
    void* request = ucp_ep_close_nbx(ep, &param);
    ep = nullptr;
    ucx->wait(request, std::max(deadline, Clock::now() + milliseconds(1)));
    if (request != nullptr && !UCS_PTR_IS_ERR(request)) ucp_request_free(request);
    stop_goodbye_watch();
    return said_goodbye;
  }

  void watch_goodbye() {
    ucp_request_param_t param{};
    goodbye_request = ucp_tag_recv_nbx(ucx->worker(), &goodbye, sizeof(goodbye), kHandshakeTag,
                                       kFullMask, &param);
    if (UCS_PTR_IS_ERR(goodbye_request)) goodbye_request = nullptr;
  }

  // True once the peer said goodbye (then peer_status reports a closed connection).
  void check_goodbye() {
    if (goodbye_request == nullptr || ucp_request_check_status(goodbye_request) == UCS_INPROGRESS) {
      return;
    }
    ucp_request_free(goodbye_request);
    goodbye_request = nullptr;
    if (peer_status == UCS_OK) {
      peer_status = UCS_ERR_CONNECTION_RESET;
      peer_said_goodbye = true;
    }
  }

  void stop_goodbye_watch() {
    if (goodbye_request == nullptr) return;
    ucp_request_cancel(ucx->worker(), goodbye_request);
    ucx->wait(goodbye_request, Clock::now() + kCloseGrace);
    ucp_request_free(goodbye_request);
    goodbye_request = nullptr;
  }

  // Adds this channel's endpoint parameters: peer failure reporting instead of hangs.
  void fill_error_handling(ucp_ep_params_t& params) {
    params.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
    params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    params.err_handler.cb = &Impl::on_error;
    params.err_handler.arg = this;
  }

  void close_endpoint(uint32_t flags) {
    ucp_request_param_t param{};
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = flags;
    void* request = ucp_ep_close_nbx(ep, &param);
    ep = nullptr;
    if (request != nullptr && !UCS_PTR_IS_ERR(request)) {
      ucx->wait(request, Clock::now() + kCloseGrace);
      ucp_request_free(request);
    }
  }

  // Closes the channel for good after an unrecoverable error (timed-out send, broken payload).
  // Tells a live peer goodbye (briefly) so its calls fail instead of waiting for their timeouts.
  void close_for_good(const std::string& reason) {
    if (ep != nullptr && peer_status == UCS_OK && closed_reason.empty()) {
      (void)send_header(kHandshakeTag, 0, "goodbye", kGoodbyeTimeout);
    }
    if (closed_reason.empty()) closed_reason = reason;
    if (ep != nullptr) close_endpoint(UCP_EP_CLOSE_FLAG_FORCE);
  }

  std::string peer_gone() const {
    if (peer_said_goodbye) return "the peer closed the channel";
    return std::string("peer is gone (") + ucs_status_string(peer_status) + ")";
  }

  // Sending needs a live peer.
  Status check_open() {
    check_goodbye();
    if (peer_status != UCS_OK) {
      return make_error(ErrorCode::unavailable, "tensor channel to " + peer + ": " + peer_gone());
    }
    return check_receivable();
  }

  // Receiving works until this side closes: messages a dead peer sent before may still be
  // queued here (a wait for more then fails with unavailable).
  Status check_receivable() const {
    if (!closed_reason.empty() || ep == nullptr) {
      return make_error(ErrorCode::unavailable,
                        "tensor channel to " + peer + " is closed: " + closed_reason);
    }
    return Status::success();
  }

  // Turns the outcome of a failed wait into an Error.
  Error wait_error(const std::string& what, ucs_status_t status, milliseconds timeout) const {
    if (status == UCS_ERR_TIMED_OUT) {
      return make_error(ErrorCode::timeout, what + " on channel to " + peer + ": timed out after " +
                                                std::to_string(timeout.count()) + " ms");
    }
    if (peer_status != UCS_OK) {
      return make_error(ErrorCode::unavailable, what + " on channel to " + peer + ": " + peer_gone());
    }
    return ucx_error(what + " on channel to " + peer, status);
  }

  // Waits for all `requests`; on the first failure makes sure UCX no longer touches the buffers
  // (cancel, else force-close the endpoint) and frees everything. Returns the first failure.
  ucs_status_t wait_all(std::vector<void*>& requests, Clock::time_point deadline, bool cancelable) {
    ucs_status_t result = UCS_OK;
    for (void*& request : requests) {
      if (request == nullptr) continue;
      if (UCS_PTR_IS_ERR(request)) {
        if (result == UCS_OK) result = UCS_PTR_STATUS(request);
        request = nullptr;
        continue;
      }
      const ucs_status_t status = result == UCS_OK ? ucx->wait(request, deadline, &peer_failed, this)
                                                   : ucp_request_check_status(request);
      if (status == UCS_INPROGRESS || status == UCS_ERR_TIMED_OUT || status == UCS_ERR_CANCELED) {
        // A request cancelled by UCX itself (its endpoint closed) while the peer is still known
        // good must fail too: never report success with a request left live.
        if (result == UCS_OK) result = (status == UCS_ERR_CANCELED && peer_status != UCS_OK) ? peer_status : status;
        continue;  // still live: handled below
      }
      if (status != UCS_OK && result == UCS_OK) result = status;
      ucp_request_free(request);
      request = nullptr;
    }
    if (result == UCS_OK) return result;
    // Some requests are still live: take them back before their buffers go away.
    bool live = false;
    for (void* request : requests) {
      if (request == nullptr) continue;
      live = true;
      if (cancelable) ucp_request_cancel(ucx->worker(), request);
    }
    if (live && cancelable) live = !drain(requests, Clock::now() + kCloseGrace);
    if (live && ep != nullptr) close_endpoint(UCP_EP_CLOSE_FLAG_FORCE);
    if (live) drain(requests, Clock::now() + kCloseGrace);
    for (void*& request : requests) {
      if (request != nullptr) ucp_request_free(request);  // NOTE: only after force close
      request = nullptr;
    }
    return result;
  }

  // Progresses until all live requests finished; frees those. True when none is left.
  bool drain(std::vector<void*>& requests, Clock::time_point deadline) {
    bool all_done = true;
    for (void*& request : requests) {
      if (request == nullptr) continue;
      const ucs_status_t status = ucx->wait(request, deadline);
      if (status == UCS_ERR_TIMED_OUT) {
        all_done = false;
        continue;
      }
      ucp_request_free(request);
      request = nullptr;
    }
    return all_done;
  }

  // Receives one header on `ucp_tag`; on timeout the receive is cancelled (channel stays usable).
  Result<uint64_t> recv_header(uint64_t ucp_tag, const std::string& what, milliseconds timeout) {
    Header header{};
    header.magic = 0;
    ucp_request_param_t param{};
    std::vector<void*> requests{
        ucp_tag_recv_nbx(ucx->worker(), &header, sizeof(header), ucp_tag, kFullMask, &param)};
    const ucs_status_t status = wait_all(requests, Clock::now() + timeout, /*cancelable=*/true);
    if (status != UCS_OK) return wait_error(what, status, timeout);
    if (header.magic != kMagic) {
      close_for_good("bad header magic");
      return make_error(ErrorCode::corrupt_data, what + " on channel to " + peer +
                                                     ": bad header (not a troupe tensor channel?)");
    }
    return header.num_bytes;
  }

  Status send_header(uint64_t ucp_tag, uint64_t num_bytes, const std::string& what,
                     milliseconds timeout) {
    Header header{};
    header.num_bytes = num_bytes;
    ucp_request_param_t param{};
    std::vector<void*> requests{ucp_tag_send_nbx(ep, &header, sizeof(header), ucp_tag, &param)};
    const ucs_status_t status = wait_all(requests, Clock::now() + timeout, /*cancelable=*/false);
    if (status != UCS_OK) return wait_error(what, status, timeout);
    return Status::success();
  }
};

namespace {
bool peer_failed(void* arg) {
  auto* impl = static_cast<TensorChannel::Impl*>(arg);
  impl->check_goodbye();
  return impl->peer_status != UCS_OK;
}

Status check_usable(const std::unique_ptr<TensorChannel::Impl>& impl, uint64_t tag) {
  if (!impl) return make_error(ErrorCode::unavailable, "tensor channel was moved from");
  if (tag > TensorChannel::kMaxTag) {
    return make_error(ErrorCode::invalid_argument,
                      tag_name(tag) + " is reserved (tags must be <= 2^63 - 2)");
  }
  return Status::success();
}

}  // namespace

TensorChannel::TensorChannel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TensorChannel::TensorChannel(TensorChannel&& other) noexcept = default;
TensorChannel& TensorChannel::operator=(TensorChannel&& other) noexcept = default;
TensorChannel::~TensorChannel() = default;

Status TensorChannel::close(milliseconds timeout) {
  if (!impl_) return Status::success();
  return impl_->close(timeout);
}

bool TensorChannel::is_open() const { return impl_ && impl_->check_open().ok(); }
const std::string& TensorChannel::peer() const {
  static const std::string none = "(moved-from channel)";
  return impl_ ? impl_->peer : none;
}

Result<TensorChannel> TensorChannel::connect(const std::string& host, uint16_t port,
                                             milliseconds timeout,
                                             const TensorChannelOptions& options) {
  auto address = resolve(host, port, /*passive=*/false);
  if (!address.ok()) return address.error();
  auto ucx = UcxContext::create(options.ucx);
  if (!ucx.ok()) return ucx.error();

  auto impl = std::make_unique<Impl>();
  impl->ucx = std::move(*ucx);
  impl->peer = host + ":" + std::to_string(port);
  impl->max_chunk_bytes = options.max_chunk_bytes == 0 ? 1 : options.max_chunk_bytes;
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR;
  params.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
  params.sockaddr.addr = reinterpret_cast<const sockaddr*>(&address.value());
  params.sockaddr.addrlen = sizeof(sockaddr_storage);
  impl->fill_error_handling(params);
  const ucs_status_t status = ucp_ep_create(impl->ucx->worker(), &params, &impl->ep);
  if (status != UCS_OK) return ucx_error("connect to " + impl->peer, status);

  // Handshake: hello there, ack back. Proves the listener is a tensor channel and is alive.
  const auto deadline = Clock::now() + timeout;
  const std::string what = "connect";
  TROUPE_TRY(impl->send_header(kHandshakeTag, 0, what, timeout));
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
  auto ack = impl->recv_header(kHandshakeTag, what, std::max(left, milliseconds(0)));
  if (!ack.ok()) return ack.error();
  impl->watch_goodbye();
  return TensorChannel(std::move(impl));
}

Status TensorChannel::send(uint64_t tag, const void* data, uint64_t bytes, milliseconds timeout) {
  TROUPE_TRY(check_usable(impl_, tag));
  TROUPE_TRY(impl_->check_open());
  if (data == nullptr && bytes > 0) {
    return make_error(ErrorCode::invalid_argument, "send " + tag_name(tag) + ": null data");
  }
  Header header{};
  header.num_bytes = bytes;
  ucp_request_param_t param{};
  std::vector<void*> requests;
  requests.push_back(ucp_tag_send_nbx(impl_->ep, &header, sizeof(header), tag | kHeaderBit, &param));
  const auto* bytes_in = static_cast<const uint8_t*>(data);
  for (uint64_t offset = 0; offset < bytes; offset += impl_->max_chunk_bytes) {
    const uint64_t length = std::min(impl_->max_chunk_bytes, bytes - offset);
    requests.push_back(ucp_tag_send_nbx(impl_->ep, bytes_in + offset, length, tag, &param));
  }
  const ucs_status_t status = impl_->wait_all(requests, Clock::now() + timeout, /*cancelable=*/false);
  if (status == UCS_OK) return Status::success();
  const std::string what = "send " + tag_name(tag) + " (" + std::to_string(bytes) + " bytes)";
  Error error = impl_->wait_error(what, status, timeout);
  impl_->close_for_good(what + " failed");
  return error;
}

Result<uint64_t> TensorChannel::probe(uint64_t tag, milliseconds timeout) {
  TROUPE_TRY(check_usable(impl_, tag));
  auto& sizes = impl_->pending_sizes[tag];
  if (!sizes.empty()) return sizes.front();
  TROUPE_TRY(impl_->check_receivable());
  auto size = impl_->recv_header(tag | kHeaderBit, "probe " + tag_name(tag), timeout);
  if (!size.ok()) return size.error();
  sizes.push_back(*size);
  return *size;
}

Result<uint64_t> TensorChannel::recv(uint64_t tag, void* data, uint64_t capacity,
                                     milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto size = probe(tag, timeout);
  if (!size.ok()) return size.error();
  const uint64_t bytes = *size;
  const std::string what = "recv " + tag_name(tag) + " (" + std::to_string(bytes) + " bytes)";
  if (bytes > capacity) {
    return make_error(ErrorCode::invalid_argument,
                      what + ": message does not fit the receive buffer of " +
                          std::to_string(capacity) + " bytes (it stays queued)");
  }
  if (data == nullptr && bytes > 0) {
    return make_error(ErrorCode::invalid_argument, what + ": null buffer");
  }
  impl_->pending_sizes[tag].pop_front();
  TROUPE_TRY(impl_->check_receivable());
  ucp_request_param_t param{};
  std::vector<void*> requests;
  auto* bytes_out = static_cast<uint8_t*>(data);
  for (uint64_t offset = 0; offset < bytes; offset += impl_->max_chunk_bytes) {
    const uint64_t length = std::min(impl_->max_chunk_bytes, bytes - offset);
    requests.push_back(
        ucp_tag_recv_nbx(impl_->ucx->worker(), bytes_out + offset, length, tag, kFullMask, &param));
  }
  const ucs_status_t status = impl_->wait_all(requests, deadline, /*cancelable=*/true);
  if (status == UCS_OK) return bytes;
  Error error = impl_->wait_error(what, status, timeout);
  impl_->close_for_good(what + " failed mid-payload");
  return error;
}

// ---------------------------------------------------------------------------------------------
struct TensorListener::Impl {
  std::shared_ptr<UcxContext> ucx;
  ucp_listener_h listener = nullptr;
  ucp_conn_request_h request = nullptr;  // the first peer, until accept() takes it
  uint16_t port = 0;
  uint64_t max_chunk_bytes = uint64_t{1} << 30;

  static void on_connection(ucp_conn_request_h conn_request, void* arg) {
    auto* self = static_cast<Impl*>(arg);
    if (self->request == nullptr) {
      self->request = conn_request;
    } else {
      ucp_listener_reject(self->listener, conn_request);  // one peer per listener
    }
  }

  void stop() {
    if (listener == nullptr) return;
    if (request != nullptr) ucp_listener_reject(listener, request);
    request = nullptr;
    ucp_listener_destroy(listener);
    listener = nullptr;
  }

  ~Impl() { stop(); }
};

TensorListener::TensorListener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TensorListener::TensorListener(TensorListener&& other) noexcept = default;
TensorListener& TensorListener::operator=(TensorListener&& other) noexcept = default;
TensorListener::~TensorListener() = default;
uint16_t TensorListener::port() const { return impl_->port; }

Result<TensorListener> TensorListener::listen(const std::string& host, uint16_t port,
                                              const TensorChannelOptions& options) {
  const std::string bind_host = host == "0.0.0.0" ? "" : host;
  auto address = resolve(bind_host, port, /*passive=*/true);
  if (!address.ok()) return address.error();
  auto ucx = UcxContext::create(options.ucx);
  if (!ucx.ok()) return ucx.error();

  auto impl = std::make_unique<Impl>();
  impl->ucx = std::move(*ucx);
  impl->max_chunk_bytes = options.max_chunk_bytes == 0 ? 1 : options.max_chunk_bytes;
  ucp_listener_params_t params{};
  params.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
  params.sockaddr.addr = reinterpret_cast<const sockaddr*>(&address.value());
  params.sockaddr.addrlen = sizeof(sockaddr_storage);
  params.conn_handler.cb = &Impl::on_connection;
  params.conn_handler.arg = impl.get();
  const std::string where = (host.empty() ? "0.0.0.0" : host) + ":" + std::to_string(port);
  ucs_status_t status = ucp_listener_create(impl->ucx->worker(), &params, &impl->listener);
  if (status != UCS_OK) return ucx_error("listen on " + where, status);

  ucp_listener_attr_t attr{};
  attr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
  status = ucp_listener_query(impl->listener, &attr);
  if (status != UCS_OK) return ucx_error("query listener on " + where, status);
  impl->port = port_of(attr.sockaddr);
  return TensorListener(std::move(impl));
}

Result<TensorChannel> TensorListener::accept(milliseconds timeout) {
  if (impl_->listener == nullptr) {
    return make_error(ErrorCode::unavailable,
                      "tensor listener on port " + std::to_string(impl_->port) +
                          " already accepted its peer");
  }
  const auto deadline = Clock::now() + timeout;
  const auto spin_until = Clock::now() + milliseconds(2);
  while (impl_->request == nullptr) {
    impl_->ucx->progress();
    const auto now = Clock::now();
    if (now >= deadline) {
      return make_error(ErrorCode::timeout, "no peer connected to port " +
                                                std::to_string(impl_->port) + " within " +
                                                std::to_string(timeout.count()) + " ms");
    }
    if (now > spin_until) impl_->ucx->idle(deadline);
  }

  auto channel = std::make_unique<TensorChannel::Impl>();
  channel->ucx = impl_->ucx;
  channel->max_chunk_bytes = impl_->max_chunk_bytes;
  ucp_conn_request_attr_t attr{};
  attr.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR;
  if (ucp_conn_request_query(impl_->request, &attr) == UCS_OK) {
    char text[INET6_ADDRSTRLEN] = "?";
    const auto& client = attr.client_address;
    const void* raw = client.ss_family == AF_INET6
                          ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in6&>(client).sin6_addr)
                          : static_cast<const void*>(&reinterpret_cast<const sockaddr_in&>(client).sin_addr);
    inet_ntop(client.ss_family, raw, text, sizeof(text));
    channel->peer = std::string(text) + ":" + std::to_string(port_of(client));
  }
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST;
  params.conn_request = impl_->request;
  channel->fill_error_handling(params);
  impl_->request = nullptr;  // consumed by ucp_ep_create, even on failure
  const ucs_status_t status = ucp_ep_create(impl_->ucx->worker(), &params, &channel->ep);
  impl_->stop();
  if (status != UCS_OK) return ucx_error("accept peer " + channel->peer, status);

  const std::string what = "accept";
  const auto left = [&] {
    return std::max(std::chrono::duration_cast<milliseconds>(deadline - Clock::now()), milliseconds(100));
  };
  auto hello = channel->recv_header(kHandshakeTag, what, left());
  if (!hello.ok()) return hello.error();
  TROUPE_TRY(channel->send_header(kHandshakeTag, 0, what, left()));
  channel->watch_goodbye();
  return TensorChannel(std::move(channel));
}

}  // namespace troupe
