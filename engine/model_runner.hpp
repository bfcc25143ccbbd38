#pragma once
// A minimal single-sequence greedy generator over a whole model (one stage): prefill the prompt,
// then decode one token per step, with the sequence's blocks allocated in order from a private
// paged cache. For tests, benches and `troupe generate`; serving goes through the scheduler.
#include <cstdint>
#include <vector>

#include "runtime/backend.hpp"
#include "runtime/model.hpp"

namespace troupe {

struct GreedyResult {
  std::vector<int32_t> tokens;                    // generated ids (no prompt), max_new_tokens of them
  std::vector<std::vector<float>> prompt_logits;  // [prompt_len][vocab] when asked for
};

// Stops after max_new_tokens (no EOS check: callers trim). Errors: empty prompt, a model that is
// not a whole model, an invalid token id.
Result<GreedyResult> greedy_generate(Model& model, Backend& backend, const std::vector<int32_t>& prompt,
                                     int64_t max_new_tokens, int64_t block_size = 16,
                                     bool want_prompt_logits = false);

}  // namespace troupe
