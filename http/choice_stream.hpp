#pragma once
// One choice's text pipeline: engine token ids -> detokenizer -> stop strings -> reasoning split
// -> tool calls (when a tool parser is given: the content after </think> is parsed).
// Fed on the HTTP thread with the engine's outputs in order; yields the deltas to send.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "http/reasoning_parser.hpp"
#include "http/stop_strings.hpp"
#include "http/tool_call_stream.hpp"
#include "http/text_codec.hpp"
#include "engine/serving_engine.hpp"

namespace troupe::http {

struct TokenLogprob {
  int32_t id = 0;
  std::string token;
  float logprob = 0.0f;
  std::vector<std::pair<std::string, float>> top;  // [top_logprobs]
};

struct ChoiceDelta {
  std::string content;
  std::string reasoning;
  std::vector<TokenLogprob> logprobs;  // of the tokens consumed by this step
  std::vector<ToolCallDelta> tool_calls;
  FinishReason finish_reason = FinishReason::none;  // set on the last delta
  std::string error_message;                        // with FinishReason::error
};

// vLLM's per-request text fields of a choice.
struct ChoiceTextOptions {
  DecodeOptions decode;
  bool include_stop_str_in_output = false;  // stop strings and stop_token_ids' text stay in the output
  int64_t min_tokens = 0;                   // stop strings are looked for only after this many tokens
  std::vector<int64_t> stop_token_ids;      // stop ids and EOS: a final one's text is left out unless included
  std::string echo;                         // sent as content before the generated text
  int max_tool_calls = -1;                  // parallel_tool_calls: false gives 1 (later calls dropped)
};

class ChoiceStream {
 public:
  ChoiceStream(int index, const TextCodec& codec, std::vector<std::string> stop_strings,
               std::unique_ptr<ReasoningParser> reasoning_parser, bool want_logprobs,
               std::unique_ptr<ToolParser> tool_parser = nullptr);

  // Before the first push.
  void set_text_options(ChoiceTextOptions options);
  ChoiceDelta push(const GenerationOutput& output);

  int index() const { return index_; }
  bool is_finished() const { return finish_reason_ != FinishReason::none; }
  // A stop string ended the choice while the engine still runs it: the caller cancels it.
  bool needs_cancel() const { return stopped_by_string_; }
  int64_t num_completion_tokens() const { return num_completion_tokens_; }
  int64_t num_prompt_tokens() const { return num_prompt_tokens_; }
  FinishReason finish_reason() const { return finish_reason_; }
  const std::string& content() const { return content_; }
  const std::string& reasoning() const { return reasoning_; }
  const std::vector<TokenLogprob>& logprobs() const { return logprobs_; }
  // prompt_logprobs: the engine's entries (one per prompt token after the first), once they came.
  const std::vector<PromptLogprob>& prompt_logprobs() const { return prompt_logprobs_; }
  bool has_reasoning_parser() const { return reasoning_parser_ != nullptr; }
  // Once finished: the calls of the whole content (none when it was malformed: then content()
  // is all of it). A stream's deltas may have sent calls the whole parse refused (a call cut short).
  const std::vector<ToolCall>& tool_calls() const { return tool_calls_; }
  int num_tool_calls_streamed() const { return tool_stream_ ? tool_stream_->num_calls_sent() : 0; }

 private:
  void emit(const std::string& text, ChoiceDelta& delta);
  void emit_content(const std::string& text, ChoiceDelta& delta);
  void finish_tool_calls(ChoiceDelta& delta);

  int index_;
  const TextCodec* codec_;
  std::unique_ptr<TextDetokenizer> detokenizer_;
  StopStringMatcher stop_;
  std::unique_ptr<ReasoningParser> reasoning_parser_;
  bool want_logprobs_;
  ChoiceTextOptions options_;
  bool stopped_by_string_ = false;
  FinishReason finish_reason_ = FinishReason::none;
  int64_t num_completion_tokens_ = 0;
  int64_t num_prompt_tokens_ = 0;
  std::string content_;
  std::string reasoning_;
  std::vector<TokenLogprob> logprobs_;
  std::vector<PromptLogprob> prompt_logprobs_;
  std::unique_ptr<ToolCallStream> tool_stream_;
  std::vector<ToolCall> tool_calls_;
};

}  // namespace troupe::http
