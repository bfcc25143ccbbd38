#include "runtime/thread_collective.hpp"

#include <cstring>

namespace troupe {

class ThreadCollectiveGroup {
 public:
  ThreadCollectiveGroup(int64_t size, std::chrono::milliseconds timeout)
      : size_(size), timeout_(timeout), buffers_(size_t(size), nullptr), sources_(size_t(size), nullptr),
        source_shapes_(size_t(size)) {}

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
