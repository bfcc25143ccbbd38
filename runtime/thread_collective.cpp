#include "runtime/thread_collective.hpp"

#include <cstring>

namespace troupe {

class ThreadCollectiveGroup {
 public:
  ThreadCollectiveGroup(int64_t size, std::chrono::milliseconds timeout)
      : size_(size), timeout_(timeout), buffers_(size_t(size), nullptr), sources_(size_t(size), nullptr),
        source_shapes_(size_t(size)), exchanges_(size_t(size)) {}

  // Waits until every rank arrived at this barrier (or the group aborted / timed out).
  Status barrier() {
    std::unique_lock lock(mutex_);
    if (!abort_reason_.empty()) return aborted();
    const uint64_t generation = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      wake_.notify_all();
      return Status::success();
    }
    const bool done = wake_.wait_for(lock, timeout_, [&] { return generation_ != generation || !abort_reason_.empty(); });
    if (generation_ != generation) return Status::success();
    if (!done) {
      abort_reason_ = "a rank did not reach the all-reduce within " + std::to_string(timeout_.count()) + " ms";
      wake_.notify_all();
      return make_error(ErrorCode::timeout, abort_reason_);
    }
    return aborted();
  }

  Status all_reduce_sum(int64_t rank, Tensor& t) {
    if (t.device() != Device::cpu || t.dtype() != DType::f32)
      return make_error(ErrorCode::invalid_argument, "thread all-reduce takes host f32 tensors");
    buffers_[size_t(rank)] = t.data<float>();
    const int64_t n = t.numel();
    TROUPE_TRY(barrier());  // every rank's buffer is registered
    const int64_t begin = n * rank / size_, end = n * (rank + 1) / size_;
    std::vector<float> slice(size_t(end - begin), 0.0f);
    // Ranks add in the same order, so every rank ends with bit-identical sums.
    for (int64_t r = 0; r < size_; ++r) {
      const float* src = buffers_[size_t(r)] + begin;
      for (int64_t i = 0; i < end - begin; ++i) slice[size_t(i)] += src[i];
    }
    TROUPE_TRY(barrier());  // everyone has read before anyone writes
    for (int64_t r = 0; r < size_; ++r)
      std::memcpy(buffers_[size_t(r)] + begin, slice.data(), slice.size() * sizeof(float));
    return barrier();  // every slice is written
  }

  Status all_gather(int64_t rank, const Tensor& local, Tensor& out) {
    if (local.device() != Device::cpu || out.device() != Device::cpu)
      return make_error(ErrorCode::invalid_argument, "thread all-gather takes host tensors");
    TROUPE_TRY(check_all_gather_shapes(local, out, size_));
    sources_[size_t(rank)] = local.data<float>();
    source_shapes_[size_t(rank)] = local.shape();
    TROUPE_TRY(barrier());  // every rank's block is registered
    for (int64_t r = 0; r < size_; ++r) {
      if (source_shapes_[size_t(r)] != local.shape()) {
        // Every rank sees the same mismatch, so all fail; the barrier keeps the blocks alive.
        TROUPE_TRY(barrier());
        return make_error(ErrorCode::invalid_argument, "all_gather: rank " + std::to_string(r) +
                                                           " brought a block of another shape");
      }
    }
    place_gathered_columns(sources_.data(), size_, local.size(0), local.size(1), out.data<float>(), out.size(1));
    return barrier();  // nobody returns (and frees its block) before everyone has read it
  }

  Result<std::vector<int64_t>> all_to_all_counts(int64_t rank, const std::vector<int64_t>& send_rows) {
    if (int64_t(send_rows.size()) != size_) {  // the others would wait for this rank: abort them
      abort("all_to_all_counts: one count per rank");
      return make_error(ErrorCode::invalid_argument, "all_to_all_counts: one count per rank");
    }
    exchanges_[size_t(rank)].send_rows = &send_rows;
    TROUPE_TRY(barrier());  // every rank's counts are registered
    std::vector<int64_t> recv_rows(static_cast<size_t>(size_));
    for (int64_t s = 0; s < size_; ++s) recv_rows[size_t(s)] = (*exchanges_[size_t(s)].send_rows)[size_t(rank)];
    TROUPE_TRY(barrier());  // nobody returns (and frees its counts) before everyone has read them
    return recv_rows;
  }

  Status all_to_all(int64_t rank, const Tensor& send, const std::vector<int64_t>& send_rows, Tensor& recv,
                    const std::vector<int64_t>& recv_rows) {
    if (send.device() != Device::cpu || recv.device() != Device::cpu)
      return make_error(ErrorCode::invalid_argument, "thread all-to-all takes host tensors");
    Status shapes = check_all_to_all_shapes(send, send_rows, recv, recv_rows, size_);
    if (!shapes.ok()) {  // the others would wait for this rank: abort them
      abort(shapes.error().message);
      return shapes;
    }
    const size_t row_bytes = size_t(send.size(1)) * dtype_size(send.dtype());
    exchanges_[size_t(rank)] = Exchange{static_cast<const uint8_t*>(send.raw()), &send_rows, &recv_rows, row_bytes};
    TROUPE_TRY(barrier());  // every rank's rows and counts are registered
    // Every rank checks the whole matrix, so a mismatch fails all of them alike.
    for (int64_t s = 0; s < size_; ++s) {
      for (int64_t d = 0; d < size_; ++d) {
        const Exchange& from = exchanges_[size_t(s)];
        const Exchange& to = exchanges_[size_t(d)];
        if (from.row_bytes == to.row_bytes && (*from.send_rows)[size_t(d)] == (*to.recv_rows)[size_t(s)]) continue;
        // Said before the barrier: past it the other ranks return and free their counts.
        Error mismatch = make_error(ErrorCode::invalid_argument,
                                    "all_to_all: rank " + std::to_string(s) + " sends rank " + std::to_string(d) +
                                        " " + std::to_string((*from.send_rows)[size_t(d)]) + " rows of " +
                                        std::to_string(from.row_bytes) + " bytes; it expects " +
                                        std::to_string((*to.recv_rows)[size_t(s)]) + " of " +
                                        std::to_string(to.row_bytes));
        TROUPE_TRY(barrier());
        return mismatch;
      }
    }
    uint8_t* out = static_cast<uint8_t*>(recv.raw());
    for (int64_t s = 0; s < size_; ++s) {
      const Exchange& from = exchanges_[size_t(s)];
      int64_t first = 0;  // rows of s's send before its block for this rank
      for (int64_t d = 0; d < rank; ++d) first += (*from.send_rows)[size_t(d)];
      const size_t bytes = size_t(recv_rows[size_t(s)]) * row_bytes;
      if (bytes > 0) std::memcpy(out, from.rows + size_t(first) * row_bytes, bytes);
      out += bytes;
    }
    return barrier();  // nobody returns (and frees its rows) before everyone has read them
  }

  void abort(const std::string& why) {
    std::lock_guard lock(mutex_);
    if (abort_reason_.empty()) abort_reason_ = why.empty() ? "aborted" : why;
    wake_.notify_all();
  }

 private:
  Error aborted() const { return make_error(ErrorCode::unavailable, "tensor-parallel group aborted: " + abort_reason_); }

  int64_t size_;
  std::chrono::milliseconds timeout_;
  std::vector<float*> buffers_;
  std::vector<const float*> sources_;               // all_gather's blocks
  std::vector<std::vector<int64_t>> source_shapes_;
  struct Exchange {  // all_to_all's registration of one rank
    const uint8_t* rows = nullptr;
    const std::vector<int64_t>* send_rows = nullptr;
    const std::vector<int64_t>* recv_rows = nullptr;
    size_t row_bytes = 0;
  };
  std::vector<Exchange> exchanges_;
  std::mutex mutex_;
  std::condition_variable wake_;
  int64_t arrived_ = 0;
  uint64_t generation_ = 0;
  std::string abort_reason_;
};

namespace {

class ThreadCollective final : public Collective {
 public:
  ThreadCollective(std::shared_ptr<ThreadCollectiveGroup> group, int64_t rank, int64_t size)
      : group_(std::move(group)), rank_(rank), size_(size) {}
  int64_t rank() const override { return rank_; }
  int64_t size() const override { return size_; }
  Status all_reduce_sum(Tensor& t) override { return group_->all_reduce_sum(rank_, t); }
  Status all_gather(const Tensor& local, Tensor& out) override { return group_->all_gather(rank_, local, out); }
  Result<std::vector<int64_t>> all_to_all_counts(const std::vector<int64_t>& send_rows) override {
    return group_->all_to_all_counts(rank_, send_rows);
  }
  Status all_to_all(const Tensor& send, const std::vector<int64_t>& send_rows, Tensor& recv,
                    const std::vector<int64_t>& recv_rows) override {
    return group_->all_to_all(rank_, send, send_rows, recv, recv_rows);
  }
  void abort(const std::string& why) override { group_->abort(why); }

 private:
  std::shared_ptr<ThreadCollectiveGroup> group_;
  int64_t rank_, size_;
};

}  // namespace

std::vector<std::unique_ptr<Collective>> make_thread_collectives(int64_t size, std::chrono::milliseconds timeout) {
  auto group = std::make_shared<ThreadCollectiveGroup>(size, timeout);
  std::vector<std::unique_ptr<Collective>> ranks;
  for (int64_t r = 0; r < size; ++r) ranks.push_back(std::make_unique<ThreadCollective>(group, r, size));
  return ranks;
}

}  // namespace troupe
