#pragma once
// Continuous-batching scheduler with chunked prefill and automatic prefix caching (nano-vllm /
// vLLM v1 policy, no model). Admission starts a sequence after the longest cached prefix of full
// blocks (never the whole sequence: at least its last token is computed, so it can be sampled);
// postprocess registers each block once its KV is computed, so only a finished step's blocks are
// ever hit (a later step reads them).
// The engine step is: batch = schedule(); run the model on batch.entries; sample one token per
// entry with produces_token; finished = postprocess(batch, sampled_ids).
//
// Steps in flight (a pipeline: see engine/llm_engine.hpp): schedule() may be called again before
// the previous batch is postprocessed. A scheduled sequence is in flight until its batch is
// postprocessed (or forgotten): later batches skip it and never preempt it, so batches in flight
// hold different sequences; postprocess the batches in the order they were scheduled.
// schedule(max_seqs) caps a batch's sequences, which partitions the running ones into sets.
//
// Overlapped scheduling (one device: engine/llm_engine.hpp): schedule(0, &batch_in_flight)
// schedules the next step before the batch in flight is postprocessed. Each of its decodes (or
// last prefill chunks) that can run ahead gets a decode entry one position further whose input
// is that batch's sampled token (ScheduledEntry::previous_row); such a sequence is in flight in
// both batches. It runs ahead only when its next step needs nothing from the host first: no
// penalties, logit_bias, min_tokens, grammar or prompt logprobs, not ending at max_tokens or
// max_model_len with the token in flight, and a free block without preempting (else it is
// scheduled one step later, as before).
//
// NOTE: Sequence* in a ScheduledBatch stay valid until that batch is postprocessed, or until
// abort() of that sequence; the engine aborts a sequence in flight only after its batch.
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/block_manager.hpp"
#include "runtime/result.hpp"
#include "engine/sequence.hpp"

namespace troupe {

struct SchedulerConfig {
  int64_t max_num_seqs = 256;               // running sequences at most
  int64_t max_num_batched_tokens = 8192;    // tokens (prefill chunks + decodes) per step
  int64_t num_blocks = 0;                   // KV-cache blocks
  int64_t block_size = 16;                  // tokens per block
  int64_t max_model_len = 0;                // prompt + output; 0: only the KV cache limits
  std::vector<int32_t> eos_token_ids;
  bool enable_prefix_caching = true;        // reuse cached full blocks of earlier sequences
  // Prompt tokens per step of the sequences that still need prompt logprobs, together: each
  // returns a row of logits per position ([tokens, vocab] fp32), so the engine bounds them by
  // memory. 0: no limit beyond max_num_batched_tokens.
  int64_t max_prompt_logits_tokens = 0;

  Status validate() const;
};

struct ScheduledEntry {
  Sequence* seq = nullptr;
  int64_t seq_id = -1;
  int64_t start_position = 0;   // == seq->num_computed_tokens before this step
  int64_t num_new_tokens = 0;   // prefill chunk length, or 1 for a decode
  bool produces_token = false;  // last prefill chunk or decode: its last position is sampled
  // Overlapped scheduling: >= 0 when this decode's input token is not known yet; it is the token
  // sampled for row previous_row of the batch in flight before this one (read where it was
  // sampled: engine/step_worker.hpp).
  int32_t previous_row = -1;
};

struct ScheduledBatch {
  std::vector<ScheduledEntry> entries;  // running decodes, then partial prefills' chunks, then admissions
  std::vector<Sequence*> preempted;     // moved back to the front of the waiting queue this step
  // Ended while scheduling because they outgrew the whole KV cache (FinishReason::length).
  std::vector<std::unique_ptr<Sequence>> finished;
  int64_t num_batched_tokens = 0;

  bool empty() const { return entries.empty(); }
  int64_t num_sampled() const;  // entries with produces_token
};

class Scheduler {
 public:
  // Call config.validate() first; bad sizes are clamped, not trusted.
  explicit Scheduler(SchedulerConfig config);

  // Queues a sequence (status waiting); assigns seq.id and seq.arrival, returns the id.
  // invalid_argument: empty prompt, bad params, duplicate live request_id, prompt longer than
  // max_model_len or than the whole KV cache.
  Result<int64_t> add(Sequence seq);
  // Removes a live request, frees its blocks at once; FinishReason::abort. nullptr if unknown.
  std::unique_ptr<Sequence> abort(const std::string& request_id);

  // max_seqs > 0: at most that many sequences in this batch (besides config.max_num_seqs).
  // ahead_of: the batch in flight whose sampled tokens this one may take (overlapped scheduling).
  ScheduledBatch schedule(int64_t max_seqs = 0, const ScheduledBatch* ahead_of = nullptr);
  // sampled_token_ids: one per entry with produces_token, in entry order. Advances
  // num_computed_tokens, appends tokens, checks stop conditions ("stop": EOS / stop ids,
  // "length": max_tokens or max_model_len), frees finished sequences' blocks at once and returns
  // them (ownership moves to the caller).
  Result<std::vector<std::unique_ptr<Sequence>>> postprocess(const ScheduledBatch& batch,
                                                              const std::vector<int32_t>& sampled_token_ids);
  // A batch that will never be postprocessed (its step failed): its sequences are no longer in
  // flight; their progress stays as it was before the batch.
  void forget(const ScheduledBatch& batch);
  bool is_in_flight(const std::string& request_id) const;
  int64_t num_in_flight() const { return static_cast<int64_t>(in_flight_.size()); }

  int64_t num_waiting() const { return static_cast<int64_t>(waiting_.size()); }
  int64_t num_running() const { return static_cast<int64_t>(running_.size()); }
  bool has_unfinished() const { return !waiting_.empty() || !running_.empty(); }
  int64_t num_preemptions_total() const { return num_preemptions_total_; }
  // Prefix cache, in tokens as vLLM counts: tokens looked up at each admission, and those found.
  int64_t num_prefix_cache_queries_total() const { return num_prefix_cache_queries_total_; }
  int64_t num_prefix_cache_hits_total() const { return num_prefix_cache_hits_total_; }
  const BlockManager& block_manager() const { return blocks_; }
  const SchedulerConfig& config() const { return config_; }
  Sequence* find(const std::string& request_id);

  // For tests: block invariants, and each live sequence's blocks match its computed tokens.
  Status check_invariants() const;

 private:
  void preempt(std::unique_ptr<Sequence> seq, ScheduledBatch& batch);
  std::unique_ptr<Sequence> finish(std::unique_ptr<Sequence> seq, FinishReason reason);
  std::unique_ptr<Sequence> take(int64_t seq_id);
  // Index in running_ of the newest sequence not in flight nor in the batch being scheduled
  // (running_.size() if none).
  size_t newest_idle() const;
  // Overlapped scheduling: decode entries of the sequences of `ahead_of` that may run ahead.
  void schedule_ahead(const ScheduledBatch& ahead_of, ScheduledBatch& batch, int64_t& budget, size_t cap);

  SchedulerConfig config_;
  BlockManager blocks_;
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;  // oldest admission first
  std::unordered_map<std::string, Sequence*> by_request_;
  std::unordered_map<int64_t, Sequence*> by_id_;
  // Ids of sequences in a batch not yet postprocessed, once per such batch.
  std::unordered_multiset<int64_t> in_flight_;
  int64_t next_id_ = 0;
  int64_t num_preemptions_total_ = 0;
  int64_t num_prefix_cache_queries_total_ = 0;
  int64_t num_prefix_cache_hits_total_ = 0;
};

}  // namespace troupe
