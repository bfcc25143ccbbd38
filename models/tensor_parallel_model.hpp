#pragma once
// The ranks of one tensor-parallel stage driven in lockstep as one Model: rank 0 runs on the
// caller's thread (the engine's); ranks 1..N-1 each run on a thread of their own (bound to their
// device), woken with the step's batch -- one control message per step. Each rank keeps its own
// KV-cache shard (its heads; DeepSeek-V3: a full copy of the latent cache) with the same block ids; rank 0's is the one the engine allocates
// from kv_cache_spec(), the others are allocated alike on the first forward (and again when a
// caller brings a cache of another size).
//
// A rank that fails aborts the group's collective, so no rank waits forever in an all-reduce;
// the model is then broken and every later forward fails (the stage must be rebuilt).
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/backend.hpp"
#include "runtime/collective.hpp"
#include "runtime/model.hpp"

namespace troupe {

struct TensorParallelRank {
  std::unique_ptr<Backend> backend;  // null for rank 0: the caller (the engine) owns it
  std::unique_ptr<Model> model;      // built on this rank's backend, set_tensor_parallel'd
  std::unique_ptr<Collective> collective;
};

class TensorParallelModel final : public Model {
 public:
  explicit TensorParallelModel(std::vector<TensorParallelRank> ranks);
  ~TensorParallelModel() override;

  // Rank 0's view: the rank-local config (heads / N), its layers, its cache shard.
  const ModelConfig& config() const override { return ranks_[0].model->config(); }
  LayerRange layer_range() const override { return ranks_[0].model->layer_range(); }
  KvCacheSpec kv_cache_spec(int64_t num_blocks, int64_t block_size) const override {
    return ranks_[0].model->kv_cache_spec(num_blocks, block_size);
  }
  Result<Tensor> forward(const ForwardBatch& batch, KvCache& cache, LogitsMode mode = LogitsMode::last_token) override;
  int64_t size() const { return int64_t(ranks_.size()); }

 private:
  struct Worker {
    std::thread thread;
    std::unique_ptr<KvCache> cache;
    Status result = Status::success();
  };
  void run_worker(size_t rank);
  Status allocate_caches(const KvCache& rank0_cache);

  std::vector<TensorParallelRank> ranks_;
  std::vector<Worker> workers_;  // [size], index 0 unused

  std::mutex mutex_;
  std::condition_variable wake_;
  const ForwardBatch* batch_ = nullptr;  // the step in progress
  LogitsMode mode_ = LogitsMode::last_token;
  uint64_t step_ = 0;      // +1 per forward: the control message
  int64_t num_done_ = 0;   // workers finished with step_
  bool stopping_ = false;
  bool broken_ = false;
};

}  // namespace troupe
