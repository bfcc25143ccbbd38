#pragma once
// OpenAI response bodies and SSE chunks for chat and text completions.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "http/choice_stream.hpp"

namespace troupe::http {

struct ResponseHeader {
  std::string id;  // "chatcmpl-..." or "cmpl-..."
  int64_t created = 0;
  std::string model;
};

// Serializes with invalid UTF-8 replaced (model output may be any bytes).
std::string dump_json(const nlohmann::json& value);
// "data: <json>\n\n"
std::string sse_event(const nlohmann::json& value);
inline const char* sse_done() { return "data: [DONE]\n\n"; }

nlohmann::json usage_json(int64_t num_prompt_tokens, int64_t num_completion_tokens);
nlohmann::json chat_logprobs_json(const std::vector<TokenLogprob>& logprobs);
nlohmann::json completion_logprobs_json(const std::vector<TokenLogprob>& logprobs, int64_t text_offset);

// vLLM's prompt_logprobs: null for the first prompt token, then per token a map from token id
// (a string) to {logprob, rank, decoded_token}: the prompt's token and the top ones.
nlohmann::json prompt_logprobs_json(const std::vector<int32_t>& prompt_ids, const std::vector<PromptLogprob>& entries,
                                    const TextCodec& codec);

// Whole responses, one entry per choice (in index order).
nlohmann::json chat_completion_json(const ResponseHeader& header, const std::vector<const ChoiceStream*>& choices,
                                    bool want_logprobs, const nlohmann::json& usage);
nlohmann::json completion_json(const ResponseHeader& header, const std::vector<const ChoiceStream*>& choices,
                               bool want_logprobs, const nlohmann::json& usage);

// Tool calls: whole ({id, type, function: {name, arguments}}) and streamed deltas (the first of a
// call with id, type and name; then argument fragments).
nlohmann::json tool_calls_json(const std::vector<ToolCall>& calls);
nlohmann::json tool_call_deltas_json(const std::vector<ToolCallDelta>& deltas);

// Streaming chunks; FinishReason::none gives null. include_usage adds "usage": null. called_tools:
// a choice that sent tool calls ends with "tool_calls" instead of stop or length, as vLLM's.
nlohmann::json chat_chunk_json(const ResponseHeader& header, int index, const nlohmann::json& delta,
                               const nlohmann::json& logprobs, FinishReason finish_reason, bool include_usage,
                               bool called_tools = false);
nlohmann::json completion_chunk_json(const ResponseHeader& header, int index, const std::string& text,
                                     const nlohmann::json& logprobs, FinishReason finish_reason,
                                     bool include_usage);
// The last chunk with include_usage: empty choices and the usage.
nlohmann::json usage_chunk_json(const ResponseHeader& header, bool is_chat, const nlohmann::json& usage);

}  // namespace troupe::http
