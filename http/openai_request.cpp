#include "http/openai_request.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "http/request_fields.hpp"
#include "http/structured_output_request.hpp"

namespace troupe::http {
namespace {

using nlohmann::json;

constexpr int kMaxDepth = 64;
constexpr int64_t kMaxN = 128;
constexpr int64_t kMaxTopLogprobs = 20;

Error bad(std::string& param, const std::string& name, const std::string& what) {
  param = name;
  return make_error(ErrorCode::invalid_argument, "'" + name + "' " + what);
}

std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 64 ? s.substr(0, 61) + "..." : s;
}

bool present(const json& body, const char* key) { return body.contains(key) && !body[key].is_null(); }

// Reads an optional number in [lo, hi]; leaves `out` alone when absent or null.
Status read_double(const json& body, const char* key, double lo, double hi, double& out, std::string& param) {
  if (!present(body, key)) return Status::success();
  const json& v = body[key];
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < lo || v.get<double>() > hi)
    return bad(param, key, "must be a number in [" + shown(lo) + ", " + shown(hi) + "], got " + shown(v));
  out = v.get<double>();
  return Status::success();
}

Status read_int(const json& body, const char* key, int64_t lo, int64_t hi, int64_t& out, std::string& param) {
  if (!present(body, key)) return Status::success();
  const json& v = body[key];
  bool ok = false;
  if (v.is_number_unsigned()) {
    ok = v.get<uint64_t>() <= uint64_t(std::numeric_limits<int64_t>::max()) && v.get<int64_t>() >= lo &&
         v.get<int64_t>() <= hi;
  } else if (v.is_number_integer()) {
    ok = v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
  }
  if (!ok) return bad(param, key, "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                                      "], got " + shown(v));
  out = v.get<int64_t>();
  return Status::success();
}

Status read_bool(const json& body, const char* key, bool& out, std::string& param) {
  if (!present(body, key)) return Status::success();
  if (!body[key].is_boolean()) return bad(param, key, "must be a boolean, got " + shown(body[key]));
  out = body[key].get<bool>();
  return Status::success();
}

Result<std::vector<int32_t>> read_token_ids(const json& v, const char* key, std::string& param) {
  std::vector<int32_t> ids;
  for (const json& id : v) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > std::numeric_limits<int32_t>::max())
      return bad(param, key, "token ids must be integers >= 0, got " + shown(id));
    ids.push_back(int32_t(id.get<int64_t>()));
  }
  return ids;
}

// Fields shared by chat and completions.
Status read_common(const json& body, OpenAIRequest& r, std::string& param, const GenerationDefaults& defaults) {
  if (!body.contains("model") || !body["model"].is_string())
    return bad(param, "model", "is required and must be a string");
  r.model = body["model"].get<std::string>();
  SamplingParams& p = r.params;
  if (defaults.temperature >= 0) p.temperature = defaults.temperature;
  if (defaults.top_p >= 0) p.top_p = defaults.top_p;
  if (defaults.top_k >= 0) p.top_k = defaults.top_k == 0 ? -1 : defaults.top_k;  // 0: off, as in transformers
  TROUPE_TRY(read_double(body, "temperature", 0.0, 100.0, p.temperature, param));
  TROUPE_TRY(read_double(body, "top_p", 1e-9, 1.0, p.top_p, param));
  TROUPE_TRY(read_int(body, "top_k", -1, std::numeric_limits<int32_t>::max(), p.top_k, param));
  TROUPE_TRY(read_double(body, "min_p", 0.0, 1.0, p.min_p, param));
  TROUPE_TRY(read_double(body, "presence_penalty", -2.0, 2.0, p.presence_penalty, param));
  TROUPE_TRY(read_double(body, "frequency_penalty", -2.0, 2.0, p.frequency_penalty, param));
  TROUPE_TRY(read_double(body, "repetition_penalty", 1e-6, 100.0, p.repetition_penalty, param));
  TROUPE_TRY(read_int(body, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(),
                      p.seed, param));
  TROUPE_TRY(read_bool(body, "ignore_eos", p.ignore_eos, param));
  int64_t max_tokens = -1;
  TROUPE_TRY(read_int(body, "max_tokens", 1, std::numeric_limits<int32_t>::max(), max_tokens, param));
  TROUPE_TRY(read_int(body, "max_completion_tokens", 1, std::numeric_limits<int32_t>::max(), max_tokens, param));
  if (max_tokens > 0) {
    p.max_tokens = max_tokens;
    r.max_tokens_given = true;
  }
  TROUPE_TRY(read_int(body, "n", 1, kMaxN, r.n, param));
  TROUPE_TRY(read_bool(body, "stream", r.stream, param));
  if (present(body, "stream_options")) {
    const json& so = body["stream_options"];
    if (!so.is_object()) return bad(param, "stream_options", "must be an object");
    TROUPE_TRY(read_bool(so, "include_usage", r.include_usage, param));
  }
  if (present(body, "stop")) {
    const json& stop = body["stop"];
    if (stop.is_string()) {
      r.stop.push_back(stop.get<std::string>());
    } else if (stop.is_array()) {
      for (const json& s : stop) {
        if (!s.is_string()) return bad(param, "stop", "must be a string or a list of strings");
        r.stop.push_back(s.get<std::string>());
      }
    } else {
      return bad(param, "stop", "must be a string or a list of strings");
    }
  }
  if (present(body, "stop_token_ids")) {
    if (!body["stop_token_ids"].is_array()) return bad(param, "stop_token_ids", "must be a list of token ids");
    Result<std::vector<int32_t>> ids = read_token_ids(body["stop_token_ids"], "stop_token_ids", param);
    if (!ids.ok()) return ids.error();
    for (int32_t id : ids.value()) p.stop_token_ids.push_back(id);
  }
  return Status::success();
}

// logit_bias: {"token id": bias in [-100, 100], ...} as OpenAI; ids past the vocabulary are
// refused by the engine's request check, which knows the vocabulary.
Status read_logit_bias(const json& body, SamplingParams& p, std::string& param) {
  if (!present(body, "logit_bias")) return Status::success();
  const json& bias = body["logit_bias"];
  if (!bias.is_object()) return bad(param, "logit_bias", "must be an object of token id -> bias");
  for (auto it = bias.begin(); it != bias.end(); ++it) {
    const std::string& key = it.key();
    char* end = nullptr;
    errno = 0;
    const long long id = key.empty() ? -1 : std::strtoll(key.c_str(), &end, 10);
    if (key.empty() || errno != 0 || *end != '\0' || id < 0 || id > std::numeric_limits<int32_t>::max())
      return bad(param, "logit_bias", "keys must be token ids (non-negative integers), got " + shown(key));
    const json& v = it.value();
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < -100.0 || v.get<double>() > 100.0)
      return bad(param, "logit_bias", "biases must be numbers in [-100, 100], got " + shown(v) + " for " + key);
    p.logit_bias.push_back(LogitBias{int32_t(id), v.get<float>()});
  }
  return Status::success();
}

// vLLM's extra fields shared by chat and completions; `best_of` other than n is refused.
Status read_vllm_fields(const json& body, OpenAIRequest& r, std::string& param) {
  TROUPE_TRY(read_logit_bias(body, r.params, param));
  TROUPE_TRY(read_int(body, "min_tokens", 0, std::numeric_limits<int32_t>::max(), r.params.min_tokens, param));
  TROUPE_TRY(read_bool(body, "include_stop_str_in_output", r.include_stop_str_in_output, param));
  TROUPE_TRY(read_bool(body, "skip_special_tokens", r.decode.skip_special_tokens, param));
  TROUPE_TRY(read_bool(body, "spaces_between_special_tokens", r.decode.spaces_between_special_tokens, param));
  TROUPE_TRY(read_bool(body, "echo", r.echo, param));
  TROUPE_TRY(read_bool(body, "add_special_tokens", r.add_special_tokens, param));
  TROUPE_TRY(read_int(body, "prompt_logprobs", 0, kMaxTopLogprobs, r.prompt_logprobs, param));
  r.params.prompt_logprobs = r.prompt_logprobs;
  if (present(body, "user")) {
    if (!body["user"].is_string()) return bad(param, "user", "must be a string");
    r.user = body["user"].get<std::string>();
  }
  if (present(body, "best_of")) {
    int64_t best_of = 0;
    TROUPE_TRY(read_int(body, "best_of", 1, kMaxN, best_of, param));
    if (best_of != r.n)
      return bad(param, "best_of", "is not supported: troupe returns every sampled choice, so best_of must equal n (" +
                                       std::to_string(r.n) + "), got " + std::to_string(best_of));
  }
  if (r.params.max_tokens < r.params.min_tokens && r.max_tokens_given)
    return bad(param, "min_tokens", "must be <= max_tokens (" + std::to_string(r.params.max_tokens) + "), got " +
                                        std::to_string(r.params.min_tokens));
  r.ignored_fields = ignored_fields(body, r.endpoint);
  return Status::success();
}

// Chat-only fields of vLLM: chat_template_kwargs, continue_final_message; a per-request
// chat_template is refused (vLLM's default too: the server's --chat-template decides).
Status read_chat_fields(const json& body, OpenAIRequest& r, std::string& param) {
  if (present(body, "chat_template_kwargs")) {
    if (!body["chat_template_kwargs"].is_object()) return bad(param, "chat_template_kwargs", "must be an object");
    r.chat_template_kwargs = body["chat_template_kwargs"];
  }
  if (present(body, "chat_template"))
    return bad(param, "chat_template", "is not accepted in a request; start the server with --chat-template");
  TROUPE_TRY(read_bool(body, "continue_final_message", r.continue_final_message, param));
  if (r.continue_final_message && r.add_generation_prompt)
    return bad(param, "continue_final_message",
               "and add_generation_prompt cannot both be true (send \"add_generation_prompt\": false)");
  if (r.continue_final_message && r.messages.back().value("role", "") != "assistant")
    return bad(param, "continue_final_message", "needs the final message to be the assistant's");
  return Status::success();
}

Result<std::string> message_content(const json& message, size_t index, std::string& param) {
  const std::string name = "messages[" + std::to_string(index) + "].content";
  if (!message.contains("content") || message["content"].is_null()) return std::string();
  const json& content = message["content"];
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return bad(param, name, "must be a string or a list of content parts");
  std::string text;
  size_t k = 0;
  for (const json& part : content) {
    if (part.is_object() && part.contains("type") && part["type"].is_string() && part["type"] != "text")
      return bad(param, name + "[" + std::to_string(k) + "]",
                 "has type '" + part["type"].get<std::string>() +
                     "': troupe serves text-only models, so only \"text\" content parts are accepted");
    if (!part.is_object() || !part.contains("type") || part["type"] != "text" || !part.contains("text") ||
        !part["text"].is_string())
      return bad(param, name, "parts must be {\"type\": \"text\", \"text\": string}");
    text += part["text"].get<std::string>();
    ++k;
  }
  return text;
}

Result<json> read_messages(const json& body, std::string& param) {
  if (!body.contains("messages") || !body["messages"].is_array() || body["messages"].empty())
    return bad(param, "messages", "is required and must be a non-empty list");
  json messages = json::array();
  size_t i = 0;
  for (const json& m : body["messages"]) {
    std::string name = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return bad(param, name, "must be an object");
    if (!m.contains("role") || !m["role"].is_string()) return bad(param, name + ".role", "is required");
    std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant" && role != "tool" && role != "developer")
      return bad(param, name + ".role", "must be system, user, assistant, tool or developer, got " + shown(role));
    Result<std::string> content = message_content(m, i, param);
    if (!content.ok()) return content.error();
    TROUPE_TRY(check_tool_message(m, name, param));
    json copy = m;
    // An assistant turn of tool calls alone keeps content null: templates test `content is none`.
    const bool calls_only = role == "assistant" && present(m, "tool_calls") && !m["tool_calls"].empty() &&
                            !present(m, "content");
    copy["content"] = calls_only ? json(nullptr) : json(content.value());
    messages.push_back(std::move(copy));
    ++i;
  }
  return messages;
}

}  // namespace

Result<json> parse_json_body(const std::string& body) {
  // NOTE: bound the nesting before parsing so deep junk cannot exhaust the stack anywhere later.
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxDepth) return make_error(ErrorCode::invalid_argument, "JSON nested too deeply");
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return make_error(ErrorCode::invalid_argument, "request body is not valid JSON");
  if (!parsed.is_object()) return make_error(ErrorCode::invalid_argument, "request body must be a JSON object");
  return parsed;
}

Result<OpenAIRequest> parse_chat_request(const json& body, std::string& param, const GenerationDefaults& defaults) {
  OpenAIRequest r;
  r.endpoint = Endpoint::chat;
  Result<json> messages = read_messages(body, param);
  if (!messages.ok()) return messages.error();
  r.messages = std::move(messages).value();
  Result<ToolChoice> tool_choice = read_tool_choice(body, r.tools, param);
  if (!tool_choice.ok()) return tool_choice.error();
  r.tool_choice = tool_choice.value();
  TROUPE_TRY(read_common(body, r, param, defaults));
  TROUPE_TRY(read_structured_output(body, r.params.constraint, param));
  TROUPE_TRY(read_bool(body, "add_generation_prompt", r.add_generation_prompt, param));
  TROUPE_TRY(read_vllm_fields(body, r, param));
  TROUPE_TRY(read_chat_fields(body, r, param));
  TROUPE_TRY(read_bool(body, "logprobs", r.logprobs, param));
  if (present(body, "top_logprobs")) {
    TROUPE_TRY(read_int(body, "top_logprobs", 0, kMaxTopLogprobs, r.top_logprobs, param));
    if (!r.logprobs) return bad(param, "top_logprobs", "needs 'logprobs': true");
  }
  r.params.logprobs = r.logprobs ? r.top_logprobs : -1;
  return r;
}

Result<OpenAIRequest> parse_completion_request(const json& body, std::string& param,
                                               const GenerationDefaults& defaults) {
  OpenAIRequest r;
  r.endpoint = Endpoint::completion;
  if (!body.contains("prompt")) return bad(param, "prompt", "is required");
  const json& prompt = body["prompt"];
  if (prompt.is_string()) {
    r.prompt_text = prompt.get<std::string>();
  } else if (prompt.is_array() && prompt.size() == 1 && prompt[0].is_string()) {
    r.prompt_text = prompt[0].get<std::string>();
  } else if (prompt.is_array() && !prompt.empty()) {
    Result<std::vector<int32_t>> ids = read_token_ids(prompt, "prompt", param);
    if (!ids.ok()) return ids.error();
    r.prompt_is_ids = true;
    r.prompt_ids = std::move(ids).value();
  } else {
    return bad(param, "prompt", "must be a string or a non-empty list of token ids");
  }
  TROUPE_TRY(read_common(body, r, param, defaults));
  r.add_special_tokens = true;
  TROUPE_TRY(read_vllm_fields(body, r, param));
  if (present(body, "suffix")) return bad(param, "suffix", "is not supported");
  TROUPE_TRY(read_structured_output(body, r.params.constraint, param));
  if (present(body, "logprobs")) {
    TROUPE_TRY(read_int(body, "logprobs", 0, kMaxTopLogprobs, r.top_logprobs, param));
    r.logprobs = true;
  }
  r.params.logprobs = r.logprobs ? r.top_logprobs : -1;
  return r;
}

Result<TokenizeRequest> parse_tokenize_request(const json& body, std::string& param) {
  TokenizeRequest r;
  if (body.contains("messages")) {
    Result<json> messages = read_messages(body, param);
    if (!messages.ok()) return messages.error();
    r.is_chat = true;
    r.messages = std::move(messages).value();
    r.add_special_tokens = false;
    TROUPE_TRY(read_bool(body, "add_generation_prompt", r.add_generation_prompt, param));
  } else if (body.contains("prompt") && body["prompt"].is_string()) {
    r.prompt = body["prompt"].get<std::string>();
  } else {
    return bad(param, "prompt", "is required (a string), or 'messages'");
  }
  TROUPE_TRY(read_bool(body, "add_special_tokens", r.add_special_tokens, param));
  return r;
}

Result<std::vector<int32_t>> parse_detokenize_request(const json& body, std::string& param) {
  if (!body.contains("tokens") || !body["tokens"].is_array())
    return bad(param, "tokens", "is required and must be a list of token ids");
  return read_token_ids(body["tokens"], "tokens", param);
}

}  // namespace troupe::http
