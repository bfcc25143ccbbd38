#pragma once
// Per-request sampling parameters (OpenAI / vLLM names and meanings).
#include <cstdint>
#include <vector>

#include "runtime/result.hpp"

namespace troupe {

struct SamplingParams {
  double temperature = 1.0;         // 0: greedy
  double top_p = 1.0;               // (0, 1]
  int64_t top_k = -1;               // -1 or 0: off
  double min_p = 0.0;               // [0, 1]
  double repetition_penalty = 1.0;  // > 0; 1: off (divides positive logits of seen tokens)
  double presence_penalty = 0.0;    // [-2, 2]
  double frequency_penalty = 0.0;   // [-2, 2]
  int64_t seed = -1;                // -1: random; same seed + same prompt => same output
  int64_t max_tokens = 16;          // >= 1
  std::vector<int64_t> stop_token_ids;  // extra ids that end generation (besides EOS)
  bool ignore_eos = false;
  int64_t logprobs = -1;            // -1: none; else the number of top logprobs per token (0..20)

  bool is_greedy() const { return temperature == 0.0; }
  // Errors name the parameter (OpenAI spelling) and the bad value.
  Status validate() const;
};

}  // namespace troupe
