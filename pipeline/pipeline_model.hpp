#pragma once
// The first stage's view of a whole pipeline: a Model whose forward runs the local layers, sends
// each micro-batch's hidden states down the chain (stage 1, 2, ...) over a stage transport (the
// UCX tensor channel, or NCCL between the GPUs: stage_transport.hpp) and receives the logits back
// from the last stage. The engine on the first stage (scheduler, block
// manager, sampler) drives it like any model, or, as an AsyncSteps, keeps up to
// max_steps_in_flight steps of different sequences in the pipeline at once (one per stage: while
// stage 1 runs step N, stage 0 runs step N+1).
//
//   start_step(batch): split by sequences into micro-batches m1..mM (only steps of at least
//   min_tokens_to_split tokens: each micro-batch reads the stage's weights again, which a
//   memory-bound decode step can not afford; a compute-bound prefill gains the overlap)
//     local(m1) -> send m1 | local(m2) -> send m2 | ...        (stage 1 works on m1 meanwhile)
//   finish_step(ticket): the logits of m1..mM, rows concatenated in order
//   forward(batch) = finish_step(start_step(batch))
//
// A receiver thread takes every micro-batch's logits from the last stage in step order as they
// come (so the last stage never blocks sending them while this stage sends the next step), and
// finish_step waits for its step's.
//
// Once a step fails (peer gone, timeout, abort) the pipeline is broken: this and every later
// step return unavailable, and the group must be restarted (the stages' step counters and
// caches no longer agree).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "pipeline/stage_transport.hpp"
#include "pipeline/tensor_channel.hpp"
#include "runtime/async_steps.hpp"
#include "runtime/backend.hpp"
#include "runtime/model.hpp"

namespace troupe::cluster {

struct PipelineModelOptions {
  int64_t max_micro_batches = 2;                   // per step; never more than the step's sequences
  int64_t max_steps_in_flight = 1;                 // steps started and not finished (the stages, at most)
  int64_t min_tokens_to_split = 256;               // smaller steps travel as one micro-batch
  std::chrono::milliseconds step_timeout{120000};  // one micro-batch's round trip
};

class PipelineModel final : public Model, public AsyncSteps {
 public:
  // `first` holds layers [0, k) (not the last stage); `to_next` reaches stage 1, `from_last`
  // comes from the last stage (for two stages, the same peer on its second channel).
  PipelineModel(std::unique_ptr<Model> first, Backend& backend, std::unique_ptr<StageTransport> to_next,
                std::unique_ptr<StageTransport> from_last, PipelineModelOptions options = {});
  // Over the UCX tensor channel (HostStageTransport).
  PipelineModel(std::unique_ptr<Model> first, Backend& backend, TensorChannel to_next, TensorChannel from_last,
                PipelineModelOptions options = {});
  ~PipelineModel() override;

  const ModelConfig& config() const override { return first_->config(); }
  LayerRange layer_range() const override { return LayerRange{0, first_->config().num_hidden_layers}; }
  KvCacheSpec kv_cache_spec(int64_t num_blocks, int64_t block_size) const override {
    return first_->kv_cache_spec(num_blocks, block_size);
  }
  Result<Tensor> forward(const ForwardBatch& batch, KvCache& cache, LogitsMode mode = LogitsMode::last_token) override;

  int64_t max_steps_in_flight() const override { return options_.max_steps_in_flight; }
  Result<uint64_t> start_step(const ForwardBatch& batch, KvCache& cache, LogitsMode mode) override;
  Result<Tensor> finish_step(uint64_t ticket) override;

  // Thread-safe: the forward in progress (if any) and every later one fail with unavailable
  // within about 50 ms (a send already blocked on a hung peer waits out step_timeout).
  void abort(const std::string& why);
  bool is_broken() const { return broken_.load(); }

 private:
  Error fail(const std::string& why);
  void receive_loop();  // the receiver thread

  struct Started {
    uint64_t first_id = 0;
    size_t num_parts = 0;
  };

  std::unique_ptr<Model> first_;
  Backend& backend_;
  std::unique_ptr<StageTransport> to_next_;
  std::unique_ptr<StageTransport> from_last_;
  PipelineModelOptions options_;
  uint64_t next_step_id_ = 1;
  std::atomic<bool> broken_{false};
  std::atomic<bool> aborted_{false};
  std::string abort_reason_;  // written before aborted_ is set
  std::map<uint64_t, Started> started_;  // by ticket; caller's thread

  // Shared with the receiver thread, under mutex_.
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<uint64_t> to_receive_;                // step ids sent, in order
  std::map<uint64_t, Result<Tensor>> received_;    // logits (or why not) by step id
  bool stopping_ = false;
  std::thread receiver_;  // last: starts after the rest is built
};

// Waits for the next message under `tag` in slices of `poll`, giving up when `stop` is set or
// `timeout` passes; returns the whole message. Used by both ends of a pipeline.
Result<std::vector<uint8_t>> receive_message(TensorChannel& channel, uint64_t tag, std::chrono::milliseconds timeout,
                                             const std::atomic<bool>& stop,
                                             std::chrono::milliseconds poll = std::chrono::milliseconds(50));

}  // namespace troupe::cluster
