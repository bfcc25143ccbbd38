#include "engine/sampling_params.hpp"

#include <cmath>
#include <sstream>
#include <string>

namespace troupe {
namespace {

template <class T>
Status bad(const char* param, const char* why, T value) {
  std::ostringstream out;
  out << param << ": " << why << ", got " << value;
  Error error = make_error(ErrorCode::invalid_argument, out.str());
  error.param = param;
  return error;
}

}  // namespace

Status SamplingParams::validate() const {
  if (!std::isfinite(temperature) || temperature < 0.0)
    return bad("temperature", "must be a finite number >= 0", temperature);
  if (!std::isfinite(top_p) || !(top_p > 0.0 && top_p <= 1.0))
    return bad("top_p", "must be in (0, 1]", top_p);
  if (top_k < -1) return bad("top_k", "must be -1 or 0 (off) or >= 1", top_k);
  if (!std::isfinite(min_p) || !(min_p >= 0.0 && min_p <= 1.0))
    return bad("min_p", "must be in [0, 1]", min_p);
  if (!std::isfinite(repetition_penalty) || !(repetition_penalty > 0.0))
    return bad("repetition_penalty", "must be a finite number > 0", repetition_penalty);
  if (!std::isfinite(presence_penalty) || !(presence_penalty >= -2.0 && presence_penalty <= 2.0))
    return bad("presence_penalty", "must be in [-2, 2]", presence_penalty);
  if (!std::isfinite(frequency_penalty) || !(frequency_penalty >= -2.0 && frequency_penalty <= 2.0))
    return bad("frequency_penalty", "must be in [-2, 2]", frequency_penalty);
  if (max_tokens < 1) return bad("max_tokens", "must be >= 1", max_tokens);
  if (logprobs < -1 || logprobs > 20) return bad("logprobs", "must be -1 (none) or in [0, 20]", logprobs);
  if (prompt_logprobs < -1 || prompt_logprobs > 20)
    return bad("prompt_logprobs", "must be -1 (none) or in [0, 20]", prompt_logprobs);
  for (int64_t id : stop_token_ids)
    if (id < 0) return bad("stop_token_ids", "ids must be >= 0", id);
  TROUPE_TRY(validate_logit_bias());
  if (min_tokens < 0 || min_tokens > max_tokens)
    return bad("min_tokens", "must be in [0, max_tokens]", min_tokens);
  return Status::success();
}

Status SamplingParams::validate_logit_bias() const {
  for (const LogitBias& b : logit_bias) {
    if (b.token_id < 0) return bad("logit_bias", "token ids must be >= 0", b.token_id);
    if (!std::isfinite(b.bias) || b.bias < -100.0f || b.bias > 100.0f)
      return bad("logit_bias", "biases must be in [-100, 100]", b.bias);
  }
  return Status::success();
}

}  // namespace troupe
