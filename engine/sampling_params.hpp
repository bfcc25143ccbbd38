#pragma once
// Per-request sampling parameters (OpenAI / vLLM names and meanings).
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/result.hpp"

namespace troupe {

// A constraint on the output (structured outputs, guided decoding, tool_choice required / named):
// the engine compiles it into a grammar whose token mask applies before each sampling.
struct OutputConstraint {
  enum class Kind : uint8_t { none, json_object, json_schema, regex, choice };
  Kind kind = Kind::none;
  // json_schema: the schema as JSON text; regex: the pattern (ECMAScript-like, as vLLM's
  // guided_regex); choice: a JSON array of the allowed strings; json_object and none: empty.
  std::string spec;

  bool is_none() const { return kind == Kind::none; }
};

// One entry of OpenAI's logit_bias: added to the token's logit before any other processing.
struct LogitBias {
  int32_t token_id = 0;
  float bias = 0.0f;  // [-100, 100]
};

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
  OutputConstraint constraint;      // none: unconstrained
  std::vector<LogitBias> logit_bias;  // applied to the raw logits, first
  int64_t min_tokens = 0;           // EOS and stop_token_ids cannot be sampled before this many tokens
  int64_t prompt_logprobs = -1;     // -1: none; else the top logprobs per prompt token (0..20), vLLM's

  bool is_greedy() const { return temperature == 0.0; }
  // Errors name the parameter (OpenAI spelling) and the bad value.
  Status validate() const;
  Status validate_logit_bias() const;
};

}  // namespace troupe
