#pragma once
// Point-to-point channel for host-memory tensors (hidden states [num_tokens, hidden] as raw
// fp32/bf16 bytes) between two processes over UCX tag matching. Independent of CAF: actors send
// only control messages; the bytes travel here.
//
//   stage i                                   stage i+1
//   TensorChannel::connect(host, port) ---->  TensorListener::listen(host, 0).accept()
//   send(tag = micro-batch id, bytes)  ---->  recv(tag, buffer, capacity)
//
// Wire format of one message on user tag T (T <= kMaxTag):
//   header  {magic, num_bytes} (16 bytes) on UCP tag T | 2^63 (hello/ack/goodbye: all-ones tag)
//   payload in ceil(num_bytes / max_chunk_bytes) UCP messages on UCP tag T, in order.
// UCP matches messages of one tag from one endpoint in send order, so several micro-batches may
// be in flight and received in any tag order. Sizes are 64-bit (> 4 GiB is fine).
//
// Failure model: endpoints use UCP_ERR_HANDLING_MODE_PEER, so a dead peer turns every pending
// and later send/recv into ErrorCode::unavailable (with tcp this takes milliseconds; shared
// memory alone notices only through UCX keepalive). close() sends a goodbye on the reserved tag,
// so a peer that closes is noticed at once too. Messages that arrived before the death or the
// goodbye can still be received.
// Every call takes a timeout and returns ErrorCode::timeout when it passes. A recv that times out
// before a message arrived leaves the channel usable; a send that times out, or a recv that times
// out mid-payload, closes the channel (UCX can not take back a half-sent message), and later
// calls return unavailable.
//
// Thread-safety: none. A channel (and the listener that made it) must be used by one thread at a
// time; different channels are independent (each owns its UCP worker) and may run on different
// threads.
//
// NOTE: a blocking send of a large message (above UCX's rendezvous threshold, tens of KiB on tcp)
// completes only once the receiver has posted the matching recv. A sender that sends tags 1,2,3
// to a receiver that waits for 3 first must send from separate channels or keep payloads small.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "pipeline/ucx_context.hpp"
#include "runtime/result.hpp"

namespace troupe {

struct TensorChannelOptions {
  UcxOptions ucx;
  // Payloads larger than this travel as several UCP messages (keeps each UCP message well below
  // 4 GiB). Tests lower it to exercise chunking.
  uint64_t max_chunk_bytes = uint64_t{1} << 30;
};

class TensorChannel {
 public:
  // Largest user tag; the top bit and the all-ones tag are reserved for headers and handshakes.
  static constexpr uint64_t kMaxTag = (uint64_t{1} << 63) - 2;

  // Connects to a TensorListener and completes a handshake within `timeout`. Nothing listening
  // -> ErrorCode::unavailable (or timeout when the host does not answer).
  static Result<TensorChannel> connect(const std::string& host, uint16_t port,
                                       std::chrono::milliseconds timeout,
                                       const TensorChannelOptions& options = {});

  TensorChannel(TensorChannel&& other) noexcept;
  TensorChannel& operator=(TensorChannel&& other) noexcept;
  ~TensorChannel();  // close(100 ms) when still open, then releases the UCP worker

  // Closes gracefully: flushes sends and tells the peer, whose calls then fail with unavailable.
  // Waiting for the peer's acknowledgement needs the peer to progress (be inside a call); after
  // `timeout` this returns ErrorCode::timeout and the close finishes in the background (at the
  // latest when the channel is destroyed, which closes its sockets).
  Status close(std::chrono::milliseconds timeout);

  // Sends `bytes` bytes from `data` under `tag`; returns once the buffer may be reused.
  Status send(uint64_t tag, const void* data, uint64_t bytes, std::chrono::milliseconds timeout);

  // Receives the next message sent under `tag` into `data` and returns its size. A message larger
  // than `capacity` gives ErrorCode::invalid_argument and stays queued (recv again with a larger
  // buffer, or call probe() first).
  Result<uint64_t> recv(uint64_t tag, void* data, uint64_t capacity,
                        std::chrono::milliseconds timeout);

  // Size in bytes of the next message under `tag`, waiting for its header; does not consume it.
  Result<uint64_t> probe(uint64_t tag, std::chrono::milliseconds timeout);

  // False once the peer is gone or a send timed out.
  bool is_open() const;
  // "host:port" of the other side, for messages.
  const std::string& peer() const;

  struct Impl;

 private:
  friend class TensorListener;
  explicit TensorChannel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class TensorListener {
 public:
  // Listens on host:port ("0.0.0.0" or "" = all interfaces; port 0 = an ephemeral port).
  static Result<TensorListener> listen(const std::string& host, uint16_t port,
                                       const TensorChannelOptions& options = {});

  TensorListener(TensorListener&& other) noexcept;
  TensorListener& operator=(TensorListener&& other) noexcept;
  ~TensorListener();

  // The bound port (the ephemeral one when listen() got port 0).
  uint16_t port() const;

  // Waits for one peer and returns the channel to it. A listener accepts exactly one peer: it
  // stops listening afterwards and later calls return ErrorCode::unavailable.
  Result<TensorChannel> accept(std::chrono::milliseconds timeout);

  struct Impl;

 private:
  explicit TensorListener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace troupe
