#include "engine/serving_engine.hpp"

namespace troupe {
namespace {

Error bad_request(std::string param, std::string message) {
  Error error = make_error(ErrorCode::invalid_argument, std::move(message));
  error.param = std::move(param);
  return error;
}

}  // namespace

Status validate_generation_request(const GenerationRequest& request, const RequestLimits& limits) {
  const int64_t num_prompt = int64_t(request.prompt_ids.size());
  if (num_prompt == 0) return bad_request("prompt", "the prompt is empty");
  for (int32_t id : request.prompt_ids)
    if (id < 0 || id >= limits.vocab_size)
      return bad_request("prompt", "prompt token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                                       std::to_string(limits.vocab_size) + ")");
  const std::string context = "this model's maximum context length is " + std::to_string(limits.max_model_len) + " tokens";
  if (num_prompt >= limits.max_model_len)
    return bad_request("prompt", "the prompt has " + std::to_string(num_prompt) + " tokens; " + context +
                                     " (the prompt and at least one generated token)");
  TROUPE_TRY(request.params.validate());
  for (const LogitBias& b : request.params.logit_bias)
    if (b.token_id >= limits.vocab_size)
      return bad_request("logit_bias", "logit_bias token id " + std::to_string(b.token_id) +
                                           " is outside the vocabulary [0, " + std::to_string(limits.vocab_size) + ")");
  const int64_t max_tokens = request.params.max_tokens;
  if (request.max_tokens_must_fit && num_prompt + max_tokens > limits.max_model_len)
    return bad_request("max_tokens", context + "; you requested " + std::to_string(num_prompt + max_tokens) + " (" +
                                         std::to_string(num_prompt) + " in the prompt, " + std::to_string(max_tokens) +
                                         " to generate)");
  return Status::success();
}

}  // namespace troupe
