#pragma once
// The hand-off of hidden states between pipeline stages on GPUs over NCCL send/recv (the
// alternative to the host-staged UCX tensor channel, `--stage-transport nccl|host`), as a state
// machine over the NCCL calls (NcclLinkOps), so everything but NCCL itself runs in CPU tests:
//
//            create_id (the sending end, in ModelStage::prepare; the id travels over CAF:
//               |       stage_prepared -> head -> wire_group, pipeline/stage_wiring.hpp)
//            connect(key, id, nranks, rank)
//   idle ----------------------------> initializing --(init done)--> ready --send/recv--> ready
//     ^                                    |                           |
//     |   connect(newer epoch): the old    | timeout / error /          | timeout / error /
//     |   communicator is aborted first    | abort / peer lost          | abort / peer lost
//     +------------------------------- aborted <-----------------------+
//
// One 2-rank communicator per link (stage k -> k+1, and the last stage -> the first for logits)
// and (group, epoch): the sender is rank 0 and makes the id, the receiver rank 1; a group restart
// (epoch + 1) makes new links with new ids, so it never reuses a communicator a dead member
// belonged to. A connect for an epoch older than the current one is refused (a stale wire_group).
// Failure model: every wait (init, send, recv) has a deadline and polls (nonblocking NCCL init,
// an event query per transfer), so no stage hangs inside NCCL; a timeout, an NCCL error, abort()
// or on_peer_lost() for the current key calls ncclCommAbort exactly once -- never
// ncclCommDestroy, which can block when a peer is gone -- and later calls fail with
// unavailable until the next connect. abort() and on_peer_lost() are thread-safe and wake a send
// or recv polling on another thread; the other calls are for one thread. NcclLinkOps is only
// ever called by one thread at a time: while a wait polls, abort() leaves ncclCommAbort to the
// polling thread (it sees the abort within one pause), so a communicator is never aborted under
// a call still using it.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/result.hpp"
#include "runtime/tensor.hpp"

namespace troupe {

// The NCCL calls one rank's link makes (backends/cuda/cuda_nccl_link_ops: the real ones).
class NcclLinkOps {
 public:
  static constexpr size_t kUniqueIdBytes = 128;  // NCCL_UNIQUE_ID_BYTES
  enum class Progress { done, pending, failed };

  virtual ~NcclLinkOps() = default;
  virtual Result<std::vector<uint8_t>> make_unique_id() = 0;  // ncclGetUniqueId
  // Starts a nonblocking ncclCommInitRankConfig; poll_init reports how it goes.
  virtual Status start_init(const std::vector<uint8_t>& unique_id, int nranks, int rank) = 0;
  virtual Progress poll_init(std::string* error) = 0;  // ncclCommGetAsyncError
  // Enqueue ncclSend / ncclRecv of the tensor's bytes; poll_transfer until it completed.
  virtual Status start_send(const Tensor& t, int peer) = 0;
  virtual Status start_recv(Tensor& t, int peer) = 0;
  virtual Progress poll_transfer(std::string* error) = 0;  // the stream's event, the async error
  virtual void abort() = 0;  // ncclCommAbort of the communicator started last (none: nothing)

  // Device memory the ops own for one part of a message (`slot` 0: control bytes, 1: a tensor),
  // grown as needed (never shrunk): a tensor of `shape` over it, valid until the next call for the
  // same slot. Messages are received into it and control bytes staged through it (NCCL moves
  // device memory only). Synchronous copies between such memory and the host:
  virtual Result<Tensor> buffer(int slot, DType dtype, std::vector<int64_t> shape) = 0;
  virtual Status copy_to_device(Tensor& dst, const void* src, size_t bytes) = 0;
  virtual Status copy_to_host(void* dst, const Tensor& src, size_t bytes) = 0;
};

struct StageLinkKey {
  int64_t group_id = -1;
  uint64_t epoch = 0;
  bool operator==(const StageLinkKey& o) const { return group_id == o.group_id && epoch == o.epoch; }
};

class NcclStageLink {
 public:
  enum class State { idle, initializing, ready, aborted };
  using Clock = std::chrono::steady_clock;
  struct Timing {  // injected by tests
    std::function<Clock::time_point()> now = [] { return Clock::now(); };
    std::function<void()> pause = [] { std::this_thread::sleep_for(std::chrono::microseconds(100)); };
  };

  explicit NcclStageLink(std::unique_ptr<NcclLinkOps> ops);
  NcclStageLink(std::unique_ptr<NcclLinkOps> ops, Timing timing);
  ~NcclStageLink();  // aborts a live communicator (never destroys it)

  // The first stage: a fresh unique id for the next epoch's communicator, to send over CAF.
  Result<std::vector<uint8_t>> create_id();
  // Joins `key`'s communicator as `rank` of `nranks`; returns once it is ready. invalid_argument:
  // an id of the wrong size or a key of another group / an older epoch than the current one.
  Status connect(const StageLinkKey& key, const std::vector<uint8_t>& unique_id, int nranks, int rank,
                 std::chrono::milliseconds timeout);
  // The tensor's bytes to / from `peer` (a rank of the communicator): device memory.
  Status send(const Tensor& t, int peer, std::chrono::milliseconds timeout);
  Status recv(Tensor& t, int peer, std::chrono::milliseconds timeout);
  // Host bytes, staged through the ops' control buffer (a message's header and metadata).
  Status send_bytes(const void* data, size_t bytes, int peer, std::chrono::milliseconds timeout);
  Status recv_bytes(void* data, size_t bytes, int peer, std::chrono::milliseconds timeout);
  // A tensor of `dtype` and `shape` received into the ops' tensor buffer: device memory valid
  // until the next recv_tensor.
  Result<Tensor> recv_tensor(DType dtype, std::vector<int64_t> shape, int peer, std::chrono::milliseconds timeout);

  // Thread-safe. Aborts the communicator when `key` is the current one (a member of this group
  // epoch is gone); a loss reported for another group or epoch changes nothing.
  void on_peer_lost(const StageLinkKey& key, const std::string& why);
  void abort(const std::string& why);

  State state() const { return state_.load(); }
  StageLinkKey key() const;
  int64_t num_aborts() const { return num_aborts_.load(); }  // ncclCommAbort calls made

 private:
  // With waiting_ set (under the mutex, by the caller): calls `start`, then polls `poll` until
  // done, the deadline, an error or an abort; aborts the communicator on all but done, here.
  Status run(const std::function<Status()>& start, const std::function<NcclLinkOps::Progress(std::string*)>& poll,
             Clock::time_point deadline, const char* what);
  Status begin_transfer();  // ready -> waiting_, else unavailable
  Status check_ready();
  void abort_locked(const std::string& why);  // mutex_ held
  void log_abort() const;                      // mutex_ held: the one error line per ncclCommAbort

  std::unique_ptr<NcclLinkOps> ops_;
  Timing timing_;
  mutable std::mutex mutex_;  // key_, reason_, the abort
  StageLinkKey key_;
  bool has_key_ = false;
  std::string reason_;
  bool failed_ = false;         // aborted by a failure of its own (logged as an error)
  bool waiting_ = false;        // a thread is inside run(): it calls ops_->abort()
  bool abort_pending_ = false;  // asked while waiting_
  std::atomic<State> state_{State::idle};
  std::atomic<int64_t> num_aborts_{0};
};

}  // namespace troupe
