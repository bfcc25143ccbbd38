#include "runtime/nccl_stage_link.hpp"

#include "runtime/logging.hpp"

namespace troupe {
namespace {

constexpr const char* kDestroyed = "link destroyed";
constexpr int kControlSlot = 0;  // NcclLinkOps::buffer's slots
constexpr int kTensorSlot = 1;

}  // namespace

NcclStageLink::NcclStageLink(std::unique_ptr<NcclLinkOps> ops) : NcclStageLink(std::move(ops), Timing{}) {}

NcclStageLink::NcclStageLink(std::unique_ptr<NcclLinkOps> ops, Timing timing)
    : ops_(std::move(ops)), timing_(std::move(timing)) {}

NcclStageLink::~NcclStageLink() { abort(kDestroyed); }

StageLinkKey NcclStageLink::key() const {
  std::lock_guard lock(mutex_);
  return key_;
}

Result<std::vector<uint8_t>> NcclStageLink::create_id() {
  auto id = ops_->make_unique_id();
  if (!id.ok()) return id.error();
  if (id->size() != NcclLinkOps::kUniqueIdBytes)
    return make_error(ErrorCode::internal, "ncclGetUniqueId gave " + std::to_string(id->size()) + " bytes");
  return id;
}

Status NcclStageLink::connect(const StageLinkKey& key, const std::vector<uint8_t>& unique_id, int nranks, int rank,
                              std::chrono::milliseconds timeout) {
  if (unique_id.size() != NcclLinkOps::kUniqueIdBytes)
    return make_error(ErrorCode::invalid_argument, "an NCCL unique id has " +
                                                       std::to_string(NcclLinkOps::kUniqueIdBytes) + " bytes, got " +
                                                       std::to_string(unique_id.size()));
  if (nranks < 2 || rank < 0 || rank >= nranks)
    return make_error(ErrorCode::invalid_argument, "NCCL stage link: rank " + std::to_string(rank) + " of " +
                                                       std::to_string(nranks));
  {
    std::lock_guard lock(mutex_);
    if (has_key_ && key.group_id != key_.group_id)
      return make_error(ErrorCode::invalid_argument, "NCCL stage link of group " + std::to_string(key_.group_id) +
                                                         " asked to join group " + std::to_string(key.group_id));
    if (has_key_ && key.epoch <= key_.epoch)
      return make_error(ErrorCode::invalid_argument, "NCCL stage link: epoch " + std::to_string(key.epoch) +
                                                         " is not newer than " + std::to_string(key_.epoch));
    // A new epoch: the old communicator (if still live) goes first.
    const State old = state_.load();
    if (old == State::initializing || old == State::ready) abort_locked("epoch " + std::to_string(key.epoch));
    key_ = key;
    has_key_ = true;
    reason_.clear();
    failed_ = false;
    abort_pending_ = false;
    state_ = State::initializing;
    waiting_ = true;  // from here on an abort is left to this thread
  }
  const Clock::time_point deadline = timing_.now() + timeout;
  TROUPE_TRY(run([&] { return ops_->start_init(unique_id, nranks, rank); },
                 [this](std::string* e) { return ops_->poll_init(e); }, deadline, "ncclCommInitRank"));
  State expected = State::initializing;
  if (!state_.compare_exchange_strong(expected, State::ready)) return check_ready();
  return Status::success();
}

Status NcclStageLink::send(const Tensor& t, int peer, std::chrono::milliseconds timeout) {
  TROUPE_TRY(begin_transfer());
  const Clock::time_point deadline = timing_.now() + timeout;
  return run([&] { return ops_->start_send(t, peer); }, [this](std::string* e) { return ops_->poll_transfer(e); },
             deadline, "ncclSend");
}

Status NcclStageLink::recv(Tensor& t, int peer, std::chrono::milliseconds timeout) {
  TROUPE_TRY(begin_transfer());
  const Clock::time_point deadline = timing_.now() + timeout;
  return run([&] { return ops_->start_recv(t, peer); }, [this](std::string* e) { return ops_->poll_transfer(e); },
             deadline, "ncclRecv");
}

Status NcclStageLink::send_bytes(const void* data, size_t bytes, int peer, std::chrono::milliseconds timeout) {
  TROUPE_TRY(begin_transfer());
  const Clock::time_point deadline = timing_.now() + timeout;
  Tensor staged;
  return run(
      [&]() -> Status {
        auto buffer = ops_->buffer(kControlSlot, DType::u8, {int64_t(bytes)});
        if (!buffer.ok()) return buffer.error();
        staged = std::move(buffer.value());
        TROUPE_TRY(ops_->copy_to_device(staged, data, bytes));
        return ops_->start_send(staged, peer);
      },
      [this](std::string* e) { return ops_->poll_transfer(e); }, deadline, "ncclSend");
}

Status NcclStageLink::recv_bytes(void* data, size_t bytes, int peer, std::chrono::milliseconds timeout) {
  TROUPE_TRY(begin_transfer());
  const Clock::time_point deadline = timing_.now() + timeout;
  Tensor staged;
  return run(
      [&]() -> Status {
        auto buffer = ops_->buffer(kControlSlot, DType::u8, {int64_t(bytes)});
        if (!buffer.ok()) return buffer.error();
        staged = std::move(buffer.value());
        return ops_->start_recv(staged, peer);
      },
      [&](std::string* e) {
        // The copy to the host belongs to the transfer: still under waiting_, so no abort runs beside it.
        const NcclLinkOps::Progress progress = ops_->poll_transfer(e);
        if (progress != NcclLinkOps::Progress::done) return progress;
        Status copied = ops_->copy_to_host(data, staged, bytes);
        if (copied.ok()) return progress;
        *e = copied.error().message;
        return NcclLinkOps::Progress::failed;
      },
      deadline, "ncclRecv");
}

Result<Tensor> NcclStageLink::recv_tensor(DType dtype, std::vector<int64_t> shape, int peer,
                                          std::chrono::milliseconds timeout) {
  TROUPE_TRY(begin_transfer());
  const Clock::time_point deadline = timing_.now() + timeout;
  Tensor received;
  TROUPE_TRY(run(
      [&]() -> Status {
        auto buffer = ops_->buffer(kTensorSlot, dtype, std::move(shape));
        if (!buffer.ok()) return buffer.error();
        received = std::move(buffer.value());
        return ops_->start_recv(received, peer);
      },
      [this](std::string* e) { return ops_->poll_transfer(e); }, deadline, "ncclRecv"));
  return received;
}

Status NcclStageLink::begin_transfer() {
  std::lock_guard lock(mutex_);
  const State state = state_.load();
  if (state == State::aborted) return make_error(ErrorCode::unavailable, "NCCL stage link aborted: " + reason_);
  if (state != State::ready) return make_error(ErrorCode::unavailable, "NCCL stage link not connected");
  waiting_ = true;
  return Status::success();
}

void NcclStageLink::on_peer_lost(const StageLinkKey& key, const std::string& why) {
  std::lock_guard lock(mutex_);
  if (!has_key_ || !(key == key_)) return;  // another group or an old epoch: not this communicator
  abort_locked("peer lost: " + why);
}

void NcclStageLink::abort(const std::string& why) {
  std::lock_guard lock(mutex_);
  abort_locked(why);
}

void NcclStageLink::abort_locked(const std::string& why) {
  const State old = state_.load();
  if (old == State::aborted || old == State::idle) return;  // nothing live to abort
  reason_ = why.empty() ? "aborted" : why;
  state_ = State::aborted;
  if (waiting_) {
    abort_pending_ = true;  // the polling thread calls ncclCommAbort
    return;
  }
  log_abort();
  ops_->abort();
  ++num_aborts_;
}

void NcclStageLink::log_abort() const {
  // A failure of this link is an error; an abort asked for (a stage stopping, a peer lost
  // elsewhere) is told, and a link destroyed with its stage barely.
  const auto level = failed_ ? spdlog::level::err : reason_ == kDestroyed ? spdlog::level::debug : spdlog::level::warn;
  log::get("cluster")->log(level,
                           "NCCL stage link of group {} epoch {}: ncclCommAbort ({})", key_.group_id, key_.epoch,
                             reason_);
}

Status NcclStageLink::check_ready() {
  std::lock_guard lock(mutex_);
  if (state_.load() == State::ready) return Status::success();
  return make_error(ErrorCode::unavailable, "NCCL stage link aborted: " + reason_);
}

Status NcclStageLink::run(const std::function<Status()>& start,
                          const std::function<NcclLinkOps::Progress(std::string*)>& poll, Clock::time_point deadline,
                          const char* what) {
  Status result = start();
  if (!result.ok()) result = make_error(ErrorCode::unavailable, std::string(what) + ": " + result.error().message);
  while (result.ok()) {
    if (state_.load() == State::aborted) {
      std::lock_guard lock(mutex_);
      result = make_error(ErrorCode::unavailable, std::string(what) + ": NCCL stage link aborted: " + reason_);
      break;
    }
    std::string error;
    const NcclLinkOps::Progress progress = poll(&error);
    if (progress == NcclLinkOps::Progress::done) break;
    if (progress == NcclLinkOps::Progress::failed) {
      result = make_error(ErrorCode::unavailable, std::string(what) + ": " + error);
      break;
    }
    if (timing_.now() >= deadline) {
      result = make_error(ErrorCode::timeout, std::string(what) + " did not complete in time");
      break;
    }
    timing_.pause();
  }
  std::lock_guard lock(mutex_);
  waiting_ = false;
  if (!result.ok() && state_.load() != State::aborted) {
    failed_ = true;
    reason_ = result.error().message;
    state_ = State::aborted;
    abort_pending_ = true;
  }
  if (abort_pending_) {  // asked by another thread while this one called NCCL, or this call failed
    abort_pending_ = false;
    log_abort();
    ops_->abort();
    ++num_aborts_;
  }
  return result;
}

}  // namespace troupe
