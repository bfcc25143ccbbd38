#pragma once
// One request's generation state inside the scheduler: prompt, output so far, KV progress, RNG.
//
//   waiting --schedule--> running --stop / length--> finished
//      ^                     |   \--abort----------> finished
//      +------preempt--------+
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "engine/block_hash.hpp"
#include "engine/finish_reason.hpp"
#include "engine/prompt_logprobs.hpp"
#include "engine/sampler.hpp"
#include "engine/sampling_params.hpp"
#include "grammar/grammar_matcher.hpp"

namespace troupe {

enum class SequenceStatus { waiting, running, finished };

struct Sequence {
  int64_t id = -1;          // assigned by Scheduler::add
  std::string request_id;
  std::vector<int32_t> prompt_ids;
  std::vector<int32_t> output_ids;
  SamplingParams params;
  SequenceStatus status = SequenceStatus::waiting;
  // Tokens whose KV is in the cache. Reset to 0 on preemption (prompt + output are recomputed);
  // on admission, the cached prefix's tokens (prefix caching).
  int64_t num_computed_tokens = 0;
  // Keys of the full blocks of prompt + output so far (prefix caching; tokens never change, so
  // they survive preemption). Filled by the scheduler.
  std::vector<BlockHash> block_hashes;
  int64_t num_cached_tokens = 0;  // prefix-cache hit at the first admission (vLLM's num_cached_tokens)
  SequenceRng rng;
  int64_t arrival = -1;     // admission order, assigned by Scheduler::add
  int64_t num_preemptions = 0;
  FinishReason finish_reason = FinishReason::none;  // none until finished; stop | length | abort
  // Structured outputs: where the output stands in params.constraint's grammar (null: none).
  // Survives preemption (a function of output_ids). See engine/constrained_decoding.hpp.
  std::shared_ptr<grammar::GrammarMatcher> matcher;
  // params.prompt_logprobs >= 0: entry j for prompt token j + 1, filled as prefill chunks run;
  // sent with the first output after they are complete (engine/prompt_logprobs.hpp).
  std::vector<PromptLogprob> prompt_logprobs;
  bool prompt_logprobs_sent = false;
  // Cancelled while in flight: the engine aborts it once its steps are done; never scheduled again.
  bool is_cancelled = false;

  Sequence() = default;
  Sequence(std::string request_id_, std::vector<int32_t> prompt_ids_, SamplingParams params_)
      : request_id(std::move(request_id_)),
        prompt_ids(std::move(prompt_ids_)),
        params(std::move(params_)),
        rng(params.seed) {}

  int64_t num_prompt_tokens() const { return static_cast<int64_t>(prompt_ids.size()); }
  // Asks prompt logprobs and some are not computed yet: its prefill must run every prompt position.
  bool needs_prompt_logprobs() const {
    return params.prompt_logprobs >= 0 && !prompt_logprobs_sent &&
           int64_t(prompt_logprobs.size()) < num_prompt_tokens() - 1;
  }
  int64_t num_output_tokens() const { return static_cast<int64_t>(output_ids.size()); }
  int64_t num_tokens() const { return num_prompt_tokens() + num_output_tokens(); }
  // Tokens still to be run through the model before the next token can be sampled.
  int64_t num_uncomputed_tokens() const { return num_tokens() - num_computed_tokens; }
  // True while more than one token is uncomputed (a prompt, or a recompute after preemption).
  bool is_prefill() const { return num_uncomputed_tokens() > 1; }
  bool is_finished() const { return status == SequenceStatus::finished; }
  // Token at position pos in prompt + output; pos must be in [0, num_tokens()).
  int32_t token_at(int64_t pos) const {
    return pos < num_prompt_tokens() ? prompt_ids[pos] : output_ids[pos - num_prompt_tokens()];
  }
  TokenSpan tokens() const { return TokenSpan{&prompt_ids, &output_ids}; }
  int32_t last_token_id() const { return token_at(num_tokens() - 1); }
  // Sampler row borrowing this sequence's params, token history and RNG.
  SamplerRow sampler_row() { return SamplerRow{&params, &prompt_ids, &output_ids, &rng}; }
  // Its next step needs nothing from the host (output history, grammar, prompt logprobs), so it
  // may be scheduled before its last sampled token is known (overlapped scheduling).
  bool can_run_ahead() const {
    return !has_penalties(params) && !has_logit_processors(params) && !matcher && params.prompt_logprobs < 0 &&
           !is_cancelled;
  }
};

}  // namespace troupe
