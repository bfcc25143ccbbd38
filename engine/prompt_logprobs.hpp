#pragma once
// Prompt logprobs (vLLM's `prompt_logprobs`): for each prompt token after the first, its logprob
// under the model given the tokens before it, its rank in the vocabulary, and the top-k tokens at
// that position. Raw log-softmax of the model's logits (no temperature, penalties or bias), as
// vLLM's default logprobs mode.
//
// How they are computed: a sequence whose params ask them skips the prefix cache while it still
// needs them (Scheduler::schedule), and each prefill chunk asks the model for the logits of its
// positions before the prompt's last (SequenceSlice::num_prompt_logits); ModelRunner turns those
// rows into PromptLogprob entries on the sequence, and the engine sends them all with the
// request's first token. Chunked prefill and preemption (recompute) keep each position once.
#include <cstdint>
#include <utility>
#include <vector>

namespace troupe {

struct PromptLogprob {
  int32_t token_id = -1;  // the prompt's token at this position
  float logprob = 0.0f;
  int64_t rank = 0;       // 1 + the number of tokens with a higher logit
  std::vector<std::pair<int32_t, float>> top;  // num_top entries, best first (ties: lower id first)
};

// One position. logits: [vocab] fp32; token in [0, vocab); num_top in [0, vocab].
PromptLogprob compute_prompt_logprob(const float* logits, int64_t vocab, int32_t token, int64_t num_top);

}  // namespace troupe
