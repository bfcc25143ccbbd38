#pragma once
// NcclLinkOps without NCCL, for CPU tests of the NCCL stage hand-off: the ends of a communicator
// move bytes through a shared mailbox (FakeWire), one queue per receiving rank. An end either
// gets its wire when made (two ends of one test) or finds it by the unique id it is initialized
// with (FakeNcclNetwork: ends made by different stages meet only if the id really travelled).
// Buffers are host tensors; counters tell the tests what NCCL would have been asked.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "runtime/nccl_stage_link.hpp"

namespace troupe {

// What the fake ends of one communicator share: per receiving rank, the messages sent to it.
struct FakeWire {
  std::mutex mutex;
  std::map<int, std::deque<std::vector<uint8_t>>> inbox;
};

// The communicators of one test by unique id, and the ids handed out.
struct FakeNcclNetwork {
  std::mutex mutex;
  std::map<std::vector<uint8_t>, std::shared_ptr<FakeWire>> wires;
  uint32_t next_id = 1;
  std::atomic<int> num_ids{0};

  std::vector<uint8_t> make_id() {
    std::lock_guard lock(mutex);
    std::vector<uint8_t> id(NcclLinkOps::kUniqueIdBytes, 0x5a);
    std::memcpy(id.data(), &next_id, sizeof(next_id));
    ++next_id;
    ++num_ids;
    return id;
  }
  std::shared_ptr<FakeWire> wire_of(const std::vector<uint8_t>& id) {
    std::lock_guard lock(mutex);
    auto& wire = wires[id];
    if (!wire) wire = std::make_shared<FakeWire>();
    return wire;
  }
};

struct FakeCounters {
  std::atomic<int> aborts{0};
  std::atomic<int> inits{0};
  std::atomic<int> sends{0};
  std::atomic<bool> in_poll{false};
  std::atomic<bool> abort_during_poll{false};
  std::vector<uint8_t> last_id;
};

class FakeOps final : public NcclLinkOps {
 public:
  FakeOps(std::shared_ptr<FakeWire> wire, std::shared_ptr<FakeCounters> counters)
      : wire_(std::move(wire)), counters_(std::move(counters)) {}
  FakeOps(std::shared_ptr<FakeNcclNetwork> network, std::shared_ptr<FakeCounters> counters)
      : network_(std::move(network)), counters_(std::move(counters)) {}

  int init_polls = 2;           // pendings before init is done; < 0: never
  bool init_fails = false;
  std::atomic<bool> transfers_fail{false};
  std::atomic<int> fail_after_sends{-1};  // >= 0: sends after that many fail (a link that dies mid-run)

  Result<std::vector<uint8_t>> make_unique_id() override {
    if (network_) return network_->make_id();
    std::vector<uint8_t> id(kUniqueIdBytes);
    for (size_t i = 0; i < id.size(); ++i) id[i] = uint8_t(i * 7 + 3);
    return id;
  }
  Status start_init(const std::vector<uint8_t>& id, int nranks, int rank) override {
    counters_->last_id = id;
    ++counters_->inits;
    rank_ = rank;
    (void)nranks;
    polls_left_ = init_polls;
    live_ = true;
    if (network_) wire_ = network_->wire_of(id);
    return Status::success();
  }
  Progress poll_init(std::string* error) override {
    PollGuard guard(*counters_);
    if (init_fails) {
      *error = "ncclSystemError";
      return Progress::failed;
    }
    if (polls_left_ < 0) return Progress::pending;
    return polls_left_-- > 0 ? Progress::pending : Progress::done;
  }
  Status start_send(const Tensor& t, int peer) override {
    if (fail_after_sends.load() >= 0 && counters_->sends.load() >= fail_after_sends.load()) transfers_fail = true;
    ++counters_->sends;
    std::lock_guard lock(wire_->mutex);
    const auto* p = static_cast<const uint8_t*>(t.raw());
    wire_->inbox[peer].emplace_back(p, p + t.nbytes());
    pending_recv_ = nullptr;
    return Status::success();
  }
  Status start_recv(Tensor& t, int) override {
    pending_recv_ = &t;
    return Status::success();
  }
  Progress poll_transfer(std::string* error) override {
    PollGuard guard(*counters_);
    if (transfers_fail) {
      *error = "ncclRemoteError";
      return Progress::failed;
    }
    if (pending_recv_ == nullptr) return Progress::done;  // a send: done once queued
    std::lock_guard lock(wire_->mutex);
    auto& queue = wire_->inbox[rank_];
    if (queue.empty()) return Progress::pending;
    if (queue.front().size() != pending_recv_->nbytes()) {  // NCCL's counts must match too
      *error = "ncclInvalidUsage: " + std::to_string(queue.front().size()) + " bytes sent, " +
               std::to_string(pending_recv_->nbytes()) + " received";
      return Progress::failed;
    }
    std::memcpy(pending_recv_->raw(), queue.front().data(), queue.front().size());
    queue.pop_front();
    pending_recv_ = nullptr;
    return Progress::done;
  }
  void abort() override {
    if (counters_->in_poll.load()) counters_->abort_during_poll = true;
    if (live_) ++counters_->aborts;
    live_ = false;
  }
  // Host memory standing in for the device buffer: grown, never shrunk, handed out as views.
  Result<Tensor> buffer(int slot, DType dtype, std::vector<int64_t> shape) override {
    std::shared_ptr<Storage>& storage = slots_[slot];
    const size_t bytes = size_t(numel_of(shape)) * dtype_size(dtype);
    if (!storage || storage->nbytes < bytes) {
      storage = std::make_shared<Storage>();
      storage->nbytes = std::max<size_t>(bytes, 1);
      storage->data = std::malloc(storage->nbytes);
      storage->deleter = [](void* p) { std::free(p); };
      ++num_buffer_growths;
    }
    return Tensor::wrap(storage, dtype, std::move(shape));
  }
  int num_buffer_growths = 0;
  Status copy_to_device(Tensor& dst, const void* src, size_t bytes) override {
    std::memcpy(dst.raw(), src, bytes);
    return Status::success();
  }
  Status copy_to_host(void* dst, const Tensor& src, size_t bytes) override {
    std::memcpy(dst, src.raw(), bytes);
    return Status::success();
  }

 private:
  struct PollGuard {
    explicit PollGuard(FakeCounters& c) : c_(c) { c_.in_poll = true; }
    ~PollGuard() { c_.in_poll = false; }
    FakeCounters& c_;
  };
  std::shared_ptr<FakeWire> wire_;
  std::shared_ptr<FakeNcclNetwork> network_;
  std::shared_ptr<FakeCounters> counters_;
  int rank_ = -1;
  int polls_left_ = 0;
  bool live_ = false;
  Tensor* pending_recv_ = nullptr;
  std::shared_ptr<Storage> slots_[2];
};

}  // namespace troupe
