#include "engine/serving_engine.hpp"

namespace troupe {

Status validate_generation_request(const GenerationRequest& request, int64_t vocab_size, int64_t max_model_len) {
  if (request.prompt_ids.empty()) return make_error(ErrorCode::invalid_argument, "the prompt is empty");
  TROUPE_TRY(request.params.validate());
  for (int32_t id : request.prompt_ids)
    if (id < 0 || id >= vocab_size)
      return make_error(ErrorCode::invalid_argument, "prompt token id " + std::to_string(id) +
                                                         " is outside the vocabulary [0, " +
                                                         std::to_string(vocab_size) + ")");
  const int64_t num_prompt = int64_t(request.prompt_ids.size());
  if (num_prompt >= max_model_len)
    return make_error(ErrorCode::invalid_argument,
                      "the prompt has " + std::to_string(num_prompt) + " tokens, but this model's context is " +
                          std::to_string(max_model_len) + " tokens (prompt + at least one generated token)");
  return Status::success();
}

}  // namespace troupe
