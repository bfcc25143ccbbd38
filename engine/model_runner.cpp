#include "engine/model_runner.hpp"

#include <algorithm>
#include <string>

#include "engine/prompt_logprobs.hpp"

namespace troupe {

Result<ModelOutput> ModelRunner::run(const ScheduledBatch& batch, const BlockManager& blocks) {
  auto started = start(batch, blocks);
  if (!started.ok()) return started.error();
  return finish(std::move(started.value()));
}

Result<ModelOutput> ModelRunner::finish(StartedStep step) {
  if (!step.done) {
    auto logits = async_->finish_step(step.ticket);
    if (!logits.ok()) return logits.error();
    step.output.logits = std::move(logits.value());
  }
  ModelOutput& out = step.output;
  const int64_t num_sampled = int64_t(out.rows.size());
  if (step.prompt_rows.empty()) return std::move(out);
  // The sampler's rows come first, then each sequence's prompt rows (AttentionMetadata).
  int64_t num_prompt_rows = 0;
  for (const PromptRows& span : step.prompt_rows) num_prompt_rows += span.count;
  const Tensor all = std::move(out.logits);
  if (all.dim() != 2 || all.size(0) != num_sampled + num_prompt_rows)
    return make_error(ErrorCode::internal, "model forward returned " + std::to_string(all.dim() == 2 ? all.size(0) : -1) +
                                               " logits rows, expected " + std::to_string(num_sampled + num_prompt_rows));
  append_prompt_logprobs(backend_->to_host(all.rows(num_sampled, num_prompt_rows)), step.prompt_rows);
  out.logits = all.rows(0, num_sampled);
  return std::move(out);
}

Result<StartedStep> ModelRunner::start(const ScheduledBatch& batch, const BlockManager& blocks) {
  PreparedStep prepared = prepare(batch, blocks);
  return launch(prepared);
}

PreparedStep ModelRunner::prepare(const ScheduledBatch& batch, const BlockManager& blocks, bool own_tables) {
  PreparedStep prepared;
  StartedStep& step = prepared.step;
  ModelOutput& out = step.output;
  std::vector<PromptRows>& prompt_rows = step.prompt_rows;
  ForwardBatch& forward = prepared.forward;
  forward.token_ids.reserve(size_t(batch.num_batched_tokens));
  forward.positions.reserve(size_t(batch.num_batched_tokens));
  if (own_tables) prepared.block_tables.reserve(batch.entries.size());  // NOTE: slices point into it
  for (const ScheduledEntry& entry : batch.entries) {
    for (int64_t i = 0; i < entry.num_new_tokens; ++i) {
      if (entry.previous_row >= 0) {
        prepared.inputs_from_previous.push_back({int64_t(forward.token_ids.size()), entry.previous_row});
        forward.token_ids.push_back(-1);
      } else {
        forward.token_ids.push_back(entry.seq->token_at(entry.start_position + i));
      }
      forward.positions.push_back(int32_t(entry.start_position + i));
    }
    SequenceSlice slice;
    slice.num_new_tokens = int32_t(entry.num_new_tokens);
    slice.context_len = int32_t(entry.start_position + entry.num_new_tokens);
    slice.block_table = &blocks.block_table(entry.seq_id);
    if (own_tables) {
      prepared.block_tables.push_back(*slice.block_table);
      slice.block_table = &prepared.block_tables.back();
    }
    slice.needs_logits = entry.produces_token;
    if (entry.seq->needs_prompt_logprobs()) {
      // Positions before the prompt's last give the logprobs of the prompt tokens after them.
      const int64_t end = std::min(entry.start_position + entry.num_new_tokens, entry.seq->num_prompt_tokens() - 1);
      if (end > entry.start_position) {
        slice.num_prompt_logits = int32_t(end - entry.start_position);
        prompt_rows.push_back({entry.seq, entry.start_position, end - entry.start_position});
      }
    }
    forward.seqs.push_back(slice);
    if (entry.produces_token) {
      out.rows.push_back(entry.seq->sampler_row());
      out.sequences.push_back(entry.seq);
    }
  }
  return prepared;
}

Result<StartedStep> ModelRunner::launch(PreparedStep& prepared) {
  StartedStep& step = prepared.step;
  const ForwardBatch& forward = prepared.forward;
  if (async_) {
    auto ticket = async_->start_step(forward, *cache_, LogitsMode::last_token);
    if (!ticket.ok()) return ticket.error();
    step.ticket = ticket.value();
    return std::move(step);
  }
  auto logits = model_->forward(forward, *cache_, LogitsMode::last_token);
  if (!logits.ok()) return logits.error();
  step.output.logits = std::move(logits.value());
  step.done = true;
  return std::move(step);
}

void ModelRunner::append_prompt_logprobs(const Tensor& logits, const std::vector<PromptRows>& spans) {
  const int64_t vocab = logits.size(1);
  const float* row = logits.data<float>();
  for (const PromptRows& span : spans) {
    Sequence& seq = *span.seq;
    for (int64_t i = 0; i < span.count; ++i, row += vocab) {
      const int64_t position = span.first_position + i;
      // A recompute after preemption runs positions whose entries were already made: keep the first.
      if (position != int64_t(seq.prompt_logprobs.size())) continue;
      seq.prompt_logprobs.push_back(
          compute_prompt_logprob(row, vocab, seq.prompt_ids[size_t(position + 1)], seq.params.prompt_logprobs));
    }
  }
}

Result<GreedyResult> greedy_generate(Model& model, Backend& backend, const std::vector<int32_t>& prompt,
                                     int64_t max_new_tokens, int64_t block_size, bool want_prompt_logits) {
  if (prompt.empty()) return make_error(ErrorCode::invalid_argument, "greedy_generate: empty prompt");
  if (!model.is_first_stage() || !model.is_last_stage()) {
    return make_error(ErrorCode::invalid_argument, "greedy_generate: needs a model holding every layer");
  }
  const int64_t total = int64_t(prompt.size()) + max_new_tokens;
  const int64_t num_blocks = (total + block_size - 1) / block_size;
  auto cache = backend.create_kv_cache(model.kv_cache_spec(num_blocks, block_size));
  if (!cache.ok()) return cache.error();
  std::vector<int32_t> block_table(static_cast<size_t>(num_blocks));
  for (int64_t i = 0; i < num_blocks; ++i) block_table[size_t(i)] = int32_t(i);

  GreedyResult result;
  ForwardBatch batch;
  batch.token_ids = prompt;
  for (size_t i = 0; i < prompt.size(); ++i) batch.positions.push_back(int32_t(i));
  batch.seqs.push_back({int32_t(prompt.size()), int32_t(prompt.size()), &block_table, true});
  int32_t context_len = int32_t(prompt.size());
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    const bool all = step == 0 && want_prompt_logits;
    auto logits = model.forward(batch, cache.value(), all ? LogitsMode::all_tokens : LogitsMode::last_token);
    if (!logits.ok()) return logits.error();
    Tensor host = backend.to_host(logits.value());
    if (all) {
      const int64_t vocab = host.size(1);
      const float* p = host.data<float>();
      for (int64_t t = 0; t < host.size(0); ++t) result.prompt_logits.emplace_back(p + t * vocab, p + (t + 1) * vocab);
      host = host.rows(host.size(0) - 1, 1);
    }
    const int32_t next = backend.argmax(host)[0];
    result.tokens.push_back(next);
    batch.token_ids = {next};
    batch.positions = {context_len};
    ++context_len;
    batch.seqs[0].num_new_tokens = 1;
    batch.seqs[0].context_len = context_len;
  }
  return result;
}

}  // namespace troupe
