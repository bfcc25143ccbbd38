#pragma once
// A Model whose decode steps run as step graphs (Backend::begin_graph / end_graph; CUDA graphs on
// the GPU): a step of only decode tokens is padded to the next batch-size bucket, recorded the first
// time that bucket is seen and replayed after that, so its hundreds of kernels cost one launch.
// Other steps (prefills, mixed steps, all-token logits) run the wrapped model as they are.
//
// Padding rows are sequences of one token at position 0 whose block table is the scratch block:
// the last block of the KV cache, which this model adds to the wrapped model's spec, so the block
// manager never hands it out. Block tables of recorded steps are padded to a fixed width (the
// blocks of max_model_len), so a recording holds for any context; a step on another KV cache drops
// the recordings and records again.
#include <cstdint>
#include <memory>
#include <set>
#include <vector>

#include "runtime/backend.hpp"
#include "runtime/model.hpp"

namespace troupe {

struct StepGraphOptions {
  int64_t max_batch = 256;      // largest bucket; bigger decode steps run eagerly
  int64_t max_model_len = 0;    // longest context a recorded step serves (> 0)
};

class GraphedModel final : public Model {
 public:
  // The buckets: 1, 2, 4, 8, then multiples of 8 up to 32, multiples of 16 up to 128, then of 32
  // (as vLLM captures them), capped by max_batch.
  static std::vector<int64_t> buckets(int64_t max_batch);

  GraphedModel(std::unique_ptr<Model> inner, Backend& backend, StepGraphOptions options);

  const ModelConfig& config() const override { return inner_->config(); }
  LayerRange layer_range() const override { return inner_->layer_range(); }
  // The wrapped model's spec with one more block: the scratch block padding rows write into.
  KvCacheSpec kv_cache_spec(int64_t num_blocks, int64_t block_size) const override;
  Result<Tensor> forward(const ForwardBatch& batch, KvCache& cache, LogitsMode mode = LogitsMode::last_token) override;

  Model& inner() { return *inner_; }  // the wrapped model, for steps that must run eagerly
  // Steps replayed and recorded so far, and buckets dropped after a failed recording.
  int64_t num_replayed() const { return num_replayed_; }
  int64_t num_recorded() const { return int64_t(recorded_.size()); }
  int64_t num_dropped() const { return int64_t(dropped_.size()); }
  // Forgets every recording (and the backend's graphs): the next step of each bucket records again,
  // under the backend's switches as they are then (a benchmark's in-process A/B runs).
  void drop_recordings();

 private:
  // The bucket for `num_seqs` decode rows, or 0 when the step runs eagerly.
  int64_t bucket_for(const ForwardBatch& batch, LogitsMode mode) const;

  std::unique_ptr<Model> inner_;
  Backend& backend_;
  StepGraphOptions options_;
  std::vector<int64_t> buckets_;
  std::set<int64_t> recorded_, dropped_;
  int64_t instance_ = 0;              // distinguishes this model's recordings from others' on the backend
  std::vector<const void*> cache_;    // the KV cache the recordings use: every tensor's address
  std::vector<int32_t> scratch_table_;  // {scratch block id}
  int64_t num_replayed_ = 0;
};

}  // namespace troupe
