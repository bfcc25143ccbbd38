#include "models/tensor_parallel_model.hpp"

namespace troupe {

TensorParallelModel::TensorParallelModel(std::vector<TensorParallelRank> ranks)
    : ranks_(std::move(ranks)), workers_(ranks_.size()) {
  for (size_t r = 1; r < ranks_.size(); ++r) workers_[r].thread = std::thread([this, r] { run_worker(r); });
}

TensorParallelModel::~TensorParallelModel() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& rank : ranks_) rank.collective->abort("the tensor-parallel model is stopping");
  for (auto& worker : workers_)
    if (worker.thread.joinable()) worker.thread.join();
}

void TensorParallelModel::run_worker(size_t rank) {
  ranks_[rank].backend->bind_thread();
  uint64_t seen = 0;
  for (;;) {
    const ForwardBatch* batch;
    LogitsMode mode;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || step_ != seen; });
      if (stopping_) return;
      seen = step_;
      batch = batch_;
      mode = mode_;
    }
    auto out = ranks_[rank].model->forward(*batch, *workers_[rank].cache, mode);
    Status result = out.ok() ? Status::success() : Status(out.error());
    if (!out.ok()) ranks_[rank].collective->abort("rank " + std::to_string(rank) + ": " + out.error().message);
    {
      std::lock_guard lock(mutex_);
      workers_[rank].result = result;
      ++num_done_;
    }
    wake_.notify_all();
  }
}

Status TensorParallelModel::allocate_caches(const KvCache& rank0_cache) {
  for (size_t r = 1; r < ranks_.size(); ++r) {
    // Shaped like rank 0's: a caller that brings a cache of another size gets new shards.
    const auto& have = workers_[r].cache;
    if (have && have->num_blocks() == rank0_cache.num_blocks() && have->block_size() == rank0_cache.block_size())
      continue;
    auto cache = ranks_[r].backend->create_kv_cache(
        ranks_[r].model->kv_cache_spec(rank0_cache.num_blocks(), rank0_cache.block_size()));
    if (!cache.ok()) return cache.error();
    workers_[r].cache = std::make_unique<KvCache>(std::move(cache.value()));
  }
  return Status::success();
}

Result<Tensor> TensorParallelModel::forward(const ForwardBatch& batch, KvCache& cache, LogitsMode mode) {
  if (broken_) return make_error(ErrorCode::unavailable, "tensor-parallel group broken by an earlier step");
  TROUPE_TRY(allocate_caches(cache));
  {
    std::lock_guard lock(mutex_);
    batch_ = &batch;
    mode_ = mode;
    num_done_ = 0;
    ++step_;
  }
  wake_.notify_all();
  auto out = ranks_[0].model->forward(batch, cache, mode);
  if (!out.ok()) ranks_[0].collective->abort("rank 0: " + out.error().message);
  std::unique_lock lock(mutex_);
  wake_.wait(lock, [&] { return num_done_ == int64_t(ranks_.size()) - 1; });
  batch_ = nullptr;
  Status failed = out.ok() ? Status::success() : Status(out.error());
  for (size_t r = 1; r < ranks_.size() && failed.ok(); ++r)
    if (!workers_[r].result.ok()) failed = workers_[r].result;
  if (!failed.ok()) {
    broken_ = true;
    return failed.error();
  }
  return out;
}

}  // namespace troupe
