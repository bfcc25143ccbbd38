#pragma once
// The first stage's view of a whole pipeline: a Model whose forward runs the local layers, sends
// each micro-batch's hidden states down the chain (stage 1, 2, ...) over the tensor channel and
// receives the logits back from the last stage. The engine on the first stage (scheduler, block
// manager, sampler) drives it like any model.
//
//   forward(batch): split by sequences into micro-batches m1..mM (only steps of at least
//   min_tokens_to_split tokens: each micro-batch reads the stage's weights again, which a
//   memory-bound decode step can not afford; a compute-bound prefill gains the overlap)
//     local(m1) -> send m1 | local(m2) -> send m2 | ...        (stage 1 works on m1 meanwhile)
//     logits m1..mM come back from the last stage (a receiver thread takes them when M > 1);
//     rows are concatenated in order
//
// Once a step fails (peer gone, timeout, abort) the pipeline is broken: this and every later
// forward return unavailable, and the group must be restarted (the stages' step counters and
// caches no longer agree).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "pipeline/tensor_channel.hpp"
#include "runtime/backend.hpp"
#include "runtime/model.hpp"

namespace troupe::cluster {

struct PipelineModelOptions {
  int64_t max_micro_batches = 2;                   // per step; never more than the step's sequences
  int64_t min_tokens_to_split = 256;               // smaller steps travel as one micro-batch
  std::chrono::milliseconds step_timeout{120000};  // one micro-batch's round trip
};

class PipelineModel final : public Model {
 public:
  // `first` holds layers [0, k) (not the last stage); `to_next` reaches stage 1, `from_last`
  // comes from the last stage (for two stages, the same peer on its second channel).
  PipelineModel(std::unique_ptr<Model> first, Backend& backend, TensorChannel to_next, TensorChannel from_last,
                PipelineModelOptions options = {});
  ~PipelineModel() override;

  const ModelConfig& config() const override { return first_->config(); }
  LayerRange layer_range() const override { return LayerRange{0, first_->config().num_hidden_layers}; }
  KvCacheSpec kv_cache_spec(int64_t num_blocks, int64_t block_size) const override {
    return first_->kv_cache_spec(num_blocks, block_size);
  }
  Result<Tensor> forward(const ForwardBatch& batch, KvCache& cache, LogitsMode mode = LogitsMode::last_token) override;

  // Thread-safe: the forward in progress (if any) and every later one fail with unavailable
  // within about 50 ms (a send already blocked on a hung peer waits out step_timeout).
  void abort(const std::string& why);
  bool is_broken() const { return broken_.load(); }

 private:
  Error fail(const std::string& why);

  std::unique_ptr<Model> first_;
  Backend& backend_;
  TensorChannel to_next_;
  TensorChannel from_last_;
  PipelineModelOptions options_;
  uint64_t next_step_id_ = 1;
  std::atomic<bool> broken_{false};
  std::atomic<bool> aborted_{false};
  std::string abort_reason_;  // written before aborted_ is set
};

// Waits for the next message under `tag` in slices of `poll`, giving up when `stop` is set or
// `timeout` passes; returns the whole message. Used by both ends of a pipeline.
Result<std::vector<uint8_t>> receive_message(TensorChannel& channel, uint64_t tag, std::chrono::milliseconds timeout,
                                             const std::atomic<bool>& stop,
                                             std::chrono::milliseconds poll = std::chrono::milliseconds(50));

}  // namespace troupe::cluster
