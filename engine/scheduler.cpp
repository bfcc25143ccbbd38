#include "engine/scheduler.hpp"

#include <algorithm>
#include <utility>

namespace troupe {
namespace {

Error bad(const std::string& why) { return make_error(ErrorCode::invalid_argument, "scheduler: " + why); }

}  // namespace

Status SchedulerConfig::validate() const {
  if (max_num_seqs < 1) return bad("max_num_seqs must be >= 1");
  if (max_num_batched_tokens < 1) return bad("max_num_batched_tokens must be >= 1");
  if (num_blocks < 0) return bad("num_blocks must be >= 0");
  if (block_size < 1) return bad("block_size must be >= 1");
  if (max_model_len < 0) return bad("max_model_len must be >= 0");
  return Status::success();
}

int64_t ScheduledBatch::num_sampled() const {
  return std::count_if(entries.begin(), entries.end(), [](const ScheduledEntry& e) { return e.produces_token; });
}

Scheduler::Scheduler(SchedulerConfig config)
    : config_(std::move(config)), blocks_(config_.num_blocks, config_.block_size, config_.enable_prefix_caching) {
  config_.max_num_seqs = std::max<int64_t>(config_.max_num_seqs, 1);
  config_.max_num_batched_tokens = std::max<int64_t>(config_.max_num_batched_tokens, 1);
}

Result<int64_t> Scheduler::add(Sequence seq) {
  const std::string who = "request '" + seq.request_id + "': ";
  if (seq.prompt_ids.empty()) return bad(who + "prompt is empty");
  if (Status s = seq.params.validate(); !s.ok())
    return make_error(s.error().code, who + s.error().message);
  if (by_request_.count(seq.request_id)) return bad(who + "request_id is already live");
  const int64_t num_prompt = seq.num_prompt_tokens();
  if (config_.max_model_len > 0 && num_prompt > config_.max_model_len)
    return bad(who + "prompt has " + std::to_string(num_prompt) + " tokens, max_model_len is " +
               std::to_string(config_.max_model_len));
  const int64_t capacity = blocks_.num_blocks() * blocks_.block_size();
  if (num_prompt > capacity)
    return bad(who + "prompt has " + std::to_string(num_prompt) + " tokens, the whole KV cache holds " +
               std::to_string(capacity));
  auto owned = std::make_unique<Sequence>(std::move(seq));
  owned->id = next_id_;
  owned->arrival = next_id_++;
  owned->status = SequenceStatus::waiting;
  owned->num_computed_tokens = 0;
  owned->finish_reason = FinishReason::none;
  by_request_[owned->request_id] = owned.get();
  by_id_[owned->id] = owned.get();
  const int64_t id = owned->id;
  waiting_.push_back(std::move(owned));
  return id;
}

Sequence* Scheduler::find(const std::string& request_id) {
  auto it = by_request_.find(request_id);
  return it == by_request_.end() ? nullptr : it->second;
}

std::unique_ptr<Sequence> Scheduler::take(int64_t seq_id) {
  std::unique_ptr<Sequence> out;
  auto in_running = std::find_if(running_.begin(), running_.end(), [&](const auto& s) { return s->id == seq_id; });
  if (in_running != running_.end()) {
    out = std::move(*in_running);
    running_.erase(in_running);
  } else {
    auto in_waiting = std::find_if(waiting_.begin(), waiting_.end(), [&](const auto& s) { return s->id == seq_id; });
    if (in_waiting == waiting_.end()) return nullptr;
    out = std::move(*in_waiting);
    waiting_.erase(in_waiting);
  }
  by_request_.erase(out->request_id);
  by_id_.erase(out->id);
  in_flight_.erase(out->id);
  return out;
}

// Idle: neither in a batch in flight nor in the one being scheduled (both are in in_flight_).
size_t Scheduler::newest_idle() const {
  for (size_t i = running_.size(); i > 0; --i)
    if (!in_flight_.count(running_[i - 1]->id)) return i - 1;
  return running_.size();
}

bool Scheduler::is_in_flight(const std::string& request_id) const {
  auto it = by_request_.find(request_id);
  return it != by_request_.end() && in_flight_.count(it->second->id) > 0;
}

void Scheduler::forget(const ScheduledBatch& batch) {
  for (const ScheduledEntry& entry : batch.entries) {
    auto it = in_flight_.find(entry.seq_id);  // once: it may be in the next batch too
    if (it != in_flight_.end()) in_flight_.erase(it);
  }
}

std::unique_ptr<Sequence> Scheduler::finish(std::unique_ptr<Sequence> seq, FinishReason reason) {
  if (blocks_.has(seq->id)) (void)blocks_.free(seq->id);
  seq->status = SequenceStatus::finished;
  seq->finish_reason = reason;
  return seq;
}

std::unique_ptr<Sequence> Scheduler::abort(const std::string& request_id) {
  Sequence* seq = find(request_id);
  if (seq == nullptr) return nullptr;
  return finish(take(seq->id), FinishReason::abort);
}

void Scheduler::preempt(std::unique_ptr<Sequence> seq, ScheduledBatch& batch) {
  (void)blocks_.free(seq->id);
  seq->num_computed_tokens = 0;
  seq->status = SequenceStatus::waiting;
  ++seq->num_preemptions;
  ++num_preemptions_total_;
  batch.preempted.push_back(seq.get());
  waiting_.push_front(std::move(seq));
}

void Scheduler::schedule_ahead(const ScheduledBatch& ahead_of, ScheduledBatch& batch, int64_t& budget, size_t cap) {
  int32_t row = -1;
  for (const ScheduledEntry& prev : ahead_of.entries) {
    if (!prev.produces_token) continue;
    ++row;
    if (budget <= 0 || batch.entries.size() >= cap) break;
    auto live = by_id_.find(prev.seq_id);
    if (live == by_id_.end()) continue;  // aborted since
    Sequence* seq = live->second;
    // After the batch in flight: its token appended, `start` tokens computed.
    const int64_t start = prev.start_position + prev.num_new_tokens;
    const int64_t num_tokens = start + 1;
    if (seq->status != SequenceStatus::running || seq->num_tokens() != start || in_flight_.count(seq->id) != 1 ||
        !seq->can_run_ahead() || seq->num_output_tokens() + 1 >= seq->params.max_tokens ||
        (config_.max_model_len > 0 && num_tokens >= config_.max_model_len) || !blocks_.can_append(seq->id, num_tokens))
      continue;
    (void)blocks_.append_slot(seq->id, num_tokens);
    ScheduledEntry entry{seq, seq->id, start, 1, true};
    entry.previous_row = row;
    batch.entries.push_back(entry);
    in_flight_.insert(seq->id);
    --budget;
  }
}

ScheduledBatch Scheduler::schedule(int64_t max_seqs, const ScheduledBatch* ahead_of) {
  ScheduledBatch batch;
  int64_t budget = config_.max_num_batched_tokens;
  // The step's tokens of sequences still needing prompt logprobs (SchedulerConfig).
  int64_t logits_budget = config_.max_prompt_logits_tokens > 0 ? config_.max_prompt_logits_tokens : budget;
  auto limited = [&](const Sequence& seq, int64_t num_new) {
    return seq.needs_prompt_logprobs() ? std::min(num_new, logits_budget) : num_new;
  };

  const size_t cap = max_seqs > 0 ? size_t(max_seqs) : running_.size() + waiting_.size();
  auto full = [&] { return batch.entries.size() >= cap; };
  if (ahead_of != nullptr) schedule_ahead(*ahead_of, batch, budget, cap);

  // 1. Running sequences not in flight, oldest first, decodes before prefill chunks: a decode
  //    token each, then the next chunk of each partial prefill from what the budget leaves (so a
  //    long prompt never holds a decode back a step: running streams keep their pace). When
  //    blocks run out, the newest running sequence that is neither in flight nor in this batch is
  //    preempted (possibly the current one), and nothing more runs this step.
  bool stopped = false;
  for (int pass = 0; pass < 2 && !stopped; ++pass) {
    const bool decodes = pass == 0;
    size_t i = 0;
    while (i < running_.size() && budget > 0 && !full()) {
      Sequence* seq = running_[i].get();
      if (in_flight_.count(seq->id) || seq->is_cancelled || seq->is_prefill() == decodes) {
        ++i;
        continue;
      }
      const int64_t num_new = limited(*seq, std::min(seq->num_uncomputed_tokens(), budget));
      if (num_new <= 0) {
        ++i;
        continue;
      }
      const int64_t target = seq->num_computed_tokens + num_new;
      bool scheduled = true;
      while (!blocks_.can_append(seq->id, target)) {
        if (running_.size() == 1) {
          // Alone and still short: it outgrew the whole KV cache.
          batch.finished.push_back(finish(take(seq->id), FinishReason::length));
          scheduled = false;
          break;
        }
        const size_t victim = newest_idle();  // >= i: seq itself is idle
        std::unique_ptr<Sequence> newest = std::move(running_[victim]);
        running_.erase(running_.begin() + long(victim));
        const bool is_self = newest.get() == seq;
        preempt(std::move(newest), batch);
        if (is_self) {
          scheduled = false;
          break;
        }
      }
      if (!scheduled) {
        stopped = true;  // seq was the newest idle one
        break;
      }
      (void)blocks_.append_slot(seq->id, target);
      batch.entries.push_back({seq, seq->id, seq->num_computed_tokens, num_new, target == seq->num_tokens()});
      in_flight_.insert(seq->id);
      budget -= num_new;
      if (seq->needs_prompt_logprobs()) logits_budget -= num_new;
      ++i;
    }
  }

  // 2. Waiting sequences in order, unless this step had to preempt.
  while (batch.preempted.empty() && !waiting_.empty() && budget > 0 && !full() &&
         static_cast<int64_t>(running_.size()) < config_.max_num_seqs) {
    Sequence* seq = waiting_.front().get();
    const int64_t block_size = blocks_.block_size();
    std::vector<int32_t> cached;
    if (blocks_.prefix_caching()) {
      extend_block_hashes(seq->block_hashes, seq->tokens(), block_size);
      // At most num_tokens - 1 cached tokens: the last one is computed to be sampled. None while
      // prompt logprobs are wanted: they need the logits of every prompt position (as vLLM).
      const int64_t max_blocks = seq->needs_prompt_logprobs() ? 0 : (seq->num_tokens() - 1) / block_size;
      cached = blocks_.cached_prefix(seq->block_hashes, seq->tokens(), max_blocks);
    }
    int64_t num_cached = int64_t(cached.size()) * block_size;
    int64_t num_new = limited(*seq, std::min(seq->num_tokens() - num_cached, budget));
    if (num_new <= 0) break;  // no prompt-logits room left this step
    if (!blocks_.can_allocate(num_cached + num_new, cached)) {
      // Admit a smaller chunk only when nothing runs, so an oversized recompute still progresses
      // (without the hit: its blocks count as free then).
      if (!running_.empty()) break;
      cached.clear();
      num_cached = 0;
      num_new = limited(*seq, std::min({seq->num_tokens(), budget, blocks_.num_free_blocks() * block_size}));
      if (num_new <= 0) break;
    }
    (void)blocks_.allocate(seq->id, num_cached + num_new, cached);
    if (blocks_.prefix_caching()) {
      num_prefix_cache_queries_total_ += seq->num_tokens();
      num_prefix_cache_hits_total_ += num_cached;
    }
    if (seq->num_preemptions == 0) seq->num_cached_tokens = num_cached;
    seq->num_computed_tokens = num_cached;
    seq->status = SequenceStatus::running;
    batch.entries.push_back({seq, seq->id, num_cached, num_new, num_cached + num_new == seq->num_tokens()});
    budget -= num_new;
    if (seq->needs_prompt_logprobs()) logits_budget -= num_new;
    in_flight_.insert(seq->id);
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  batch.num_batched_tokens = config_.max_num_batched_tokens - budget;
  return batch;
}

Result<std::vector<std::unique_ptr<Sequence>>> Scheduler::postprocess(const ScheduledBatch& batch,
                                                                      const std::vector<int32_t>& sampled_token_ids) {
  forget(batch);  // even when refused below: the batch's flight is over
  if (static_cast<int64_t>(sampled_token_ids.size()) != batch.num_sampled())
    return bad("postprocess got " + std::to_string(sampled_token_ids.size()) + " sampled ids for " +
               std::to_string(batch.num_sampled()) + " sampling entries");
  for (int32_t id : sampled_token_ids)
    if (id < 0) return bad("postprocess got negative token id " + std::to_string(id));

  std::vector<std::unique_ptr<Sequence>> finished;
  size_t k = 0;
  for (const ScheduledEntry& entry : batch.entries) {
    const int32_t token = entry.produces_token ? sampled_token_ids[k++] : -1;
    auto live = by_id_.find(entry.seq_id);
    if (live == by_id_.end()) continue;  // aborted since schedule()
    Sequence* seq = live->second;
    if (seq->status != SequenceStatus::running || seq->num_computed_tokens != entry.start_position) continue;
    seq->num_computed_tokens += entry.num_new_tokens;
    if (blocks_.prefix_caching()) {
      // Blocks this step filled are now in the cache (every stage's: same block ids).
      extend_block_hashes(seq->block_hashes, seq->tokens(), blocks_.block_size());
      blocks_.cache_full_blocks(seq->id, seq->block_hashes, seq->tokens(), seq->num_computed_tokens);
    }
    if (!entry.produces_token) continue;
    seq->output_ids.push_back(token);
    FinishReason reason = FinishReason::none;
    if (is_stop_token(token, seq->params, config_.eos_token_ids)) {
      reason = FinishReason::stop;
    } else if (seq->num_output_tokens() >= seq->params.max_tokens ||
               (config_.max_model_len > 0 && seq->num_tokens() >= config_.max_model_len)) {
      reason = FinishReason::length;
    }
    if (reason != FinishReason::none) finished.push_back(finish(take(seq->id), reason));
  }
  return finished;
}

Status Scheduler::check_invariants() const {
  TROUPE_TRY(blocks_.check_invariants());
  auto broken = [](const std::string& why) { return make_error(ErrorCode::internal, "scheduler: " + why); };
  if (static_cast<int64_t>(running_.size()) > config_.max_num_seqs) return broken("too many running sequences");
  if (blocks_.num_sequences() != static_cast<int64_t>(running_.size()))
    return broken("block tables for " + std::to_string(blocks_.num_sequences()) + " sequences, " +
                  std::to_string(running_.size()) + " running");
  for (const auto& seq : running_) {
    if (seq->status != SequenceStatus::running) return broken("running sequence has another status");
    if (!blocks_.has(seq->id)) return broken("running sequence " + std::to_string(seq->id) + " has no blocks");
    if (blocks_.num_tokens(seq->id) < seq->num_computed_tokens || seq->num_computed_tokens > seq->num_tokens())
      return broken("sequence " + std::to_string(seq->id) + " computed more than its blocks or tokens");
  }
  for (const auto& seq : waiting_) {
    if (seq->status != SequenceStatus::waiting || seq->num_computed_tokens != 0 || blocks_.has(seq->id))
      return broken("waiting sequence " + std::to_string(seq->id) + " holds state");
  }
  if (by_id_.size() != running_.size() + waiting_.size() || by_request_.size() != by_id_.size())
    return broken("lookup maps out of sync");
  for (int64_t id : in_flight_) {
    auto it = by_id_.find(id);
    if (it == by_id_.end() || it->second->status != SequenceStatus::running)
      return broken("sequence " + std::to_string(id) + " is in flight but not running");
  }
  return Status::success();
}

}  // namespace troupe
