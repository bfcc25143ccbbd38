#include "http/request_fields.hpp"

#include <algorithm>
#include <string_view>

#include "http/openai_request.hpp"

namespace troupe::http {
namespace {

// NOTE: a field is added here in the change that gives it a meaning (kept alphabetical).
constexpr std::string_view kCommonFields[] = {
    "add_special_tokens", "best_of", "echo", "frequency_penalty", "guided_choice", "guided_decoding_backend",
    "guided_json", "guided_regex", "ignore_eos", "include_stop_str_in_output", "logit_bias",
    "max_completion_tokens", "max_tokens", "min_p", "min_tokens", "model", "n", "presence_penalty",
    "prompt_logprobs", "repetition_penalty", "response_format", "seed", "skip_special_tokens",
    "spaces_between_special_tokens", "stop", "stop_token_ids", "stream", "stream_options", "structured_outputs",
    "temperature", "top_k", "top_p", "user",
};
constexpr std::string_view kChatFields[] = {
    "add_generation_prompt", "chat_template", "chat_template_kwargs", "continue_final_message",
    "logprobs", "messages", "parallel_tool_calls", "tool_choice", "tools", "top_logprobs",
};
constexpr std::string_view kCompletionFields[] = {"logprobs", "prompt", "suffix"};

template <size_t N>
bool has(const std::string_view (&fields)[N], const std::string& key) {
  return std::find(std::begin(fields), std::end(fields), key) != std::end(fields);
}

}  // namespace

std::vector<std::string> ignored_fields(const nlohmann::json& body, Endpoint endpoint) {
  std::vector<std::string> out;
  if (!body.is_object()) return out;
  for (auto it = body.begin(); it != body.end(); ++it) {
    const std::string& key = it.key();
    if (has(kCommonFields, key)) continue;
    if (endpoint == Endpoint::chat ? has(kChatFields, key) : has(kCompletionFields, key)) continue;
    out.push_back(key);
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace troupe::http
