#include "http/openai_response.hpp"

namespace troupe::http {

using nlohmann::json;

namespace {

json bytes_of(const std::string& s) {
  json bytes = json::array();
  for (unsigned char c : s) bytes.push_back(int(c));
  return bytes;
}

// The one place a finish reason becomes OpenAI JSON.
json reason_or_null(FinishReason finish_reason, bool called_tools = false) {
  if (called_tools && (finish_reason == FinishReason::stop || finish_reason == FinishReason::length))
    return "tool_calls";
  return finish_reason == FinishReason::none ? json(nullptr) : json(to_string(finish_reason));
}

}  // namespace

std::string dump_json(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string sse_event(const json& value) { return "data: " + dump_json(value) + "\n\n"; }

json usage_json(int64_t num_prompt_tokens, int64_t num_completion_tokens) {
  return json{{"prompt_tokens", num_prompt_tokens},
              {"completion_tokens", num_completion_tokens},
              {"total_tokens", num_prompt_tokens + num_completion_tokens}};
}

json chat_logprobs_json(const std::vector<TokenLogprob>& logprobs) {
  json content = json::array();
  for (const TokenLogprob& lp : logprobs) {
    json top = json::array();
    for (const auto& [token, value] : lp.top)
      top.push_back(json{{"token", token}, {"logprob", value}, {"bytes", bytes_of(token)}});
    content.push_back(
        json{{"token", lp.token}, {"logprob", lp.logprob}, {"bytes", bytes_of(lp.token)}, {"top_logprobs", top}});
  }
  return json{{"content", content}};
}

json prompt_logprobs_json(const std::vector<int32_t>& prompt_ids, const std::vector<PromptLogprob>& entries,
                          const TextCodec& codec) {
  json out = json::array();
  if (prompt_ids.empty()) return out;
  out.push_back(nullptr);
  for (const PromptLogprob& entry : entries) {
    json position = json::object();
    for (size_t k = 0; k < entry.top.size(); ++k) {
      const auto& [id, logprob] = entry.top[k];
      position[std::to_string(id)] = {{"logprob", logprob}, {"rank", int64_t(k) + 1}, {"decoded_token", codec.decode({id})}};
    }
    position[std::to_string(entry.token_id)] = {
        {"logprob", entry.logprob}, {"rank", entry.rank}, {"decoded_token", codec.decode({entry.token_id})}};
    out.push_back(std::move(position));
  }
  return out;
}

json completion_logprobs_json(const std::vector<TokenLogprob>& logprobs, int64_t text_offset) {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(), offsets = json::array();
  for (const TokenLogprob& lp : logprobs) {
    tokens.push_back(lp.token);
    token_logprobs.push_back(lp.logprob);
    json entry = json::object();
    for (const auto& [token, value] : lp.top) entry[token] = value;
    top.push_back(entry);
    offsets.push_back(text_offset);
    text_offset += int64_t(lp.token.size());
  }
  return json{{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top}, {"text_offset", offsets}};
}

json chat_completion_json(const ResponseHeader& header, const std::vector<const ChoiceStream*>& choices,
                          bool want_logprobs, const json& usage) {
  json out_choices = json::array();
  for (const ChoiceStream* c : choices) {
    const bool called_tools = !c->tool_calls().empty();
    // With tool calls and no text, content is null (OpenAI's shape).
    json content = called_tools && c->content().empty() ? json(nullptr) : json(c->content());
    json message{{"role", "assistant"}, {"content", content}};
    if (c->has_reasoning_parser())
      message["reasoning_content"] = c->reasoning().empty() ? json(nullptr) : json(c->reasoning());
    message["tool_calls"] = tool_calls_json(c->tool_calls());
    out_choices.push_back(json{{"index", c->index()},
                               {"message", message},
                               {"logprobs", want_logprobs ? chat_logprobs_json(c->logprobs()) : json(nullptr)},
                               {"finish_reason", reason_or_null(c->finish_reason(), called_tools)}});
  }
  return json{{"id", header.id},       {"object", "chat.completion"}, {"created", header.created},
              {"model", header.model}, {"choices", out_choices},      {"usage", usage}};
}

json completion_json(const ResponseHeader& header, const std::vector<const ChoiceStream*>& choices,
                     bool want_logprobs, const json& usage) {
  json out_choices = json::array();
  for (const ChoiceStream* c : choices) {
    out_choices.push_back(json{{"index", c->index()},
                               {"text", c->content()},
                               {"logprobs", want_logprobs ? completion_logprobs_json(c->logprobs(), 0) : json(nullptr)},
                               {"finish_reason", reason_or_null(c->finish_reason())}});
  }
  return json{{"id", header.id},       {"object", "text_completion"}, {"created", header.created},
              {"model", header.model}, {"choices", out_choices},      {"usage", usage}};
}

json tool_calls_json(const std::vector<ToolCall>& calls) {
  json out = json::array();
  for (const ToolCall& call : calls)
    out.push_back(json{{"id", call.id},
                       {"type", "function"},
                       {"function", {{"name", call.name}, {"arguments", call.arguments}}}});
  return out;
}

json tool_call_deltas_json(const std::vector<ToolCallDelta>& deltas) {
  json out = json::array();
  for (const ToolCallDelta& d : deltas) {
    json entry{{"index", d.index}};
    if (d.is_first) {
      entry["id"] = d.id;
      entry["type"] = "function";
      entry["function"] = json{{"name", d.name}, {"arguments", d.arguments}};
    } else {
      entry["function"] = json{{"arguments", d.arguments}};
    }
    out.push_back(std::move(entry));
  }
  return out;
}

json chat_chunk_json(const ResponseHeader& header, int index, const json& delta, const json& logprobs,
                     FinishReason finish_reason, bool include_usage, bool called_tools) {
  json choice{{"index", index},
              {"delta", delta},
              {"logprobs", logprobs},
              {"finish_reason", reason_or_null(finish_reason, called_tools)}};
  json chunk{{"id", header.id},       {"object", "chat.completion.chunk"}, {"created", header.created},
             {"model", header.model}, {"choices", json::array({choice})}};
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

json completion_chunk_json(const ResponseHeader& header, int index, const std::string& text, const json& logprobs,
                           FinishReason finish_reason, bool include_usage) {
  json choice{{"index", index}, {"text", text}, {"logprobs", logprobs}, {"finish_reason", reason_or_null(finish_reason)}};
  json chunk{{"id", header.id},       {"object", "text_completion"}, {"created", header.created},
             {"model", header.model}, {"choices", json::array({choice})}};
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

json usage_chunk_json(const ResponseHeader& header, bool is_chat, const json& usage) {
  return json{{"id", header.id},
              {"object", is_chat ? "chat.completion.chunk" : "text_completion"},
              {"created", header.created},
              {"model", header.model},
              {"choices", json::array()},
              {"usage", usage}};
}

}  // namespace troupe::http
