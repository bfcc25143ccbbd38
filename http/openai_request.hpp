#pragma once
// Parsing and validation of OpenAI request bodies (/v1/chat/completions, /v1/completions,
// /tokenize, /detokenize). Every bad field gives invalid_argument naming the field; `param`
// receives the field name for the error body.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "http/tool_request.hpp"
#include "runtime/model_config.hpp"

#include "runtime/result.hpp"
#include "engine/sampling_params.hpp"
#include "http/text_codec.hpp"

namespace troupe::http {

enum class Endpoint { chat, completion };

struct OpenAIRequest {
  Endpoint endpoint = Endpoint::chat;
  std::string model;
  // Chat: validated messages (content parts joined into one string), tools or null.
  nlohmann::json messages;
  nlohmann::json tools;
  ToolChoice tool_choice;  // http/tool_request: tool_choice and its default
  bool add_generation_prompt = true;
  // Completion: a text prompt, or token ids when prompt_is_ids.
  std::string prompt_text;
  bool prompt_is_ids = false;
  std::vector<int32_t> prompt_ids;

  SamplingParams params;
  bool max_tokens_given = false;
  std::vector<std::string> stop;
  int64_t n = 1;
  bool stream = false;
  bool include_usage = false;
  bool logprobs = false;      // chat: logprobs; completion: logprobs != null
  int64_t top_logprobs = 0;   // chat: top_logprobs; completion: the logprobs integer

  // vLLM's extra fields (logit_bias and min_tokens live in params).
  bool include_stop_str_in_output = false;
  DecodeOptions decode;        // skip_special_tokens, spaces_between_special_tokens
  bool echo = false;           // completion: the prompt before the text; chat: the final assistant message
  bool add_special_tokens = false;  // chat: false (the template has them); completion: true
  nlohmann::json chat_template_kwargs;  // an object or null
  bool continue_final_message = false;
  int64_t prompt_logprobs = -1;  // -1: none; else top logprobs per prompt token
  std::string user;
  // Body fields troupe does not know (logged once per request, as vLLM does).
  std::vector<std::string> ignored_fields;
};

struct TokenizeRequest {
  bool is_chat = false;
  std::string prompt;
  nlohmann::json messages;
  bool add_generation_prompt = true;
  bool add_special_tokens = true;
};

// The body as JSON: invalid_argument for invalid JSON, nesting deeper than 64, or a non-object.
Result<nlohmann::json> parse_json_body(const std::string& body);

// `defaults`: the model's generation_config.json sampling defaults (temperature, top_p, top_k),
// which a request that leaves a field out gets, as vLLM applies them; absent ones keep OpenAI's.
Result<OpenAIRequest> parse_chat_request(const nlohmann::json& body, std::string& param,
                                         const GenerationDefaults& defaults = {});
Result<OpenAIRequest> parse_completion_request(const nlohmann::json& body, std::string& param,
                                               const GenerationDefaults& defaults = {});
Result<TokenizeRequest> parse_tokenize_request(const nlohmann::json& body, std::string& param);
Result<std::vector<int32_t>> parse_detokenize_request(const nlohmann::json& body, std::string& param);

}  // namespace troupe::http
