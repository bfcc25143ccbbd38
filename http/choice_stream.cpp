#include "http/choice_stream.hpp"

#include <algorithm>

namespace troupe::http {

ChoiceStream::ChoiceStream(int index, const TextCodec& codec, std::vector<std::string> stop_strings,
                           std::unique_ptr<ReasoningParser> reasoning_parser, bool want_logprobs,
                           std::unique_ptr<ToolParser> tool_parser)
    : index_(index),
      codec_(&codec),
      detokenizer_(codec.make_detokenizer()),
      stop_(std::move(stop_strings)),
      reasoning_parser_(std::move(reasoning_parser)),
      want_logprobs_(want_logprobs) {
  if (tool_parser) tool_stream_ = std::make_unique<ToolCallStream>(std::move(tool_parser));
}

void ChoiceStream::set_text_options(ChoiceTextOptions options) {
  options_ = std::move(options);
  detokenizer_ = codec_->make_detokenizer_with(options_.decode);
  stop_ = StopStringMatcher(stop_.stop_strings(), options_.include_stop_str_in_output);
  if (tool_stream_) tool_stream_->set_max_calls(options_.max_tool_calls);
}

void ChoiceStream::emit_content(const std::string& text, ChoiceDelta& delta) {
  if (text.empty()) return;
  if (!tool_stream_) {
    delta.content += text;
    content_ += text;
    return;
  }
  ToolStreamDelta split = tool_stream_->push(text);
  delta.content += split.content;
  for (ToolCallDelta& call : split.tool_calls) delta.tool_calls.push_back(std::move(call));
}

void ChoiceStream::finish_tool_calls(ChoiceDelta& delta) {
  if (!tool_stream_) return;
  ToolStreamDelta rest = tool_stream_->finish();
  delta.content += rest.content;
  for (ToolCallDelta& call : rest.tool_calls) delta.tool_calls.push_back(std::move(call));
  // The whole answer reads the whole text once: malformed calls come back as content.
  ToolParse whole = parse_tool_calls(tool_stream_->parser(), tool_stream_->text());
  content_ = whole.content;
  if (options_.max_tool_calls >= 0 && whole.calls.size() > size_t(options_.max_tool_calls))
    whole.calls.resize(size_t(options_.max_tool_calls));
  for (ParsedToolCall& call : whole.calls)
    tool_calls_.push_back(ToolCall{make_tool_call_id(), std::move(call.name), std::move(call.arguments)});
}

void ChoiceStream::emit(const std::string& text, ChoiceDelta& delta) {
  if (text.empty()) return;
  if (!reasoning_parser_) return emit_content(text, delta);
  ReasoningDelta split = reasoning_parser_->push(text);
  delta.reasoning += split.reasoning;
  reasoning_ += split.reasoning;
  emit_content(split.content, delta);
}

ChoiceDelta ChoiceStream::push(const GenerationOutput& output) {
  ChoiceDelta delta;
  if (is_finished()) return delta;
  num_prompt_tokens_ = output.num_prompt_tokens;
  if (!output.prompt_logprobs.empty()) prompt_logprobs_ = output.prompt_logprobs;
  if (!options_.echo.empty()) {  // echo: the prompt's text first, as content, outside reasoning
    delta.content += options_.echo;
    content_ += options_.echo;
    options_.echo.clear();
  }
  // A stop token id that ended the choice: its text is left out unless include_stop_str_in_output.
  size_t num_to_detokenize = output.new_token_ids.size();
  if (output.finish_reason == FinishReason::stop && num_to_detokenize > 0 && !options_.include_stop_str_in_output) {
    const int32_t last = output.new_token_ids.back();
    if (std::find(options_.stop_token_ids.begin(), options_.stop_token_ids.end(), last) !=
        options_.stop_token_ids.end())
      --num_to_detokenize;
  }
  for (size_t i = 0; i < output.new_token_ids.size() && !stop_.is_stopped(); ++i) {
    int32_t id = output.new_token_ids[i];
    ++num_completion_tokens_;
    if (want_logprobs_) {
      TokenLogprob lp;
      lp.id = id;
      lp.token = codec_->decode({id});
      lp.logprob = i < output.logprobs.size() ? output.logprobs[i] : 0.0f;
      if (i < output.top_logprobs.size())
        for (const auto& [top_id, top_lp] : output.top_logprobs[i]) lp.top.emplace_back(codec_->decode({top_id}), top_lp);
      delta.logprobs.push_back(lp);
      logprobs_.push_back(std::move(lp));
    }
    if (i >= num_to_detokenize) break;
    StopStringMatcher::Step step = stop_.push(detokenizer_->push(id), num_completion_tokens_ > options_.min_tokens);
    emit(step.text, delta);
  }
  bool done = stop_.is_stopped() || output.finish_reason != FinishReason::none;
  if (!done) return delta;
  if (stop_.is_stopped()) {
    stopped_by_string_ = output.finish_reason == FinishReason::none;
    finish_reason_ = FinishReason::stop;
  } else {
    StopStringMatcher::Step step = stop_.push(detokenizer_->flush());
    emit(step.text, delta);
    if (!step.stopped) emit(stop_.flush(), delta);
    finish_reason_ = step.stopped ? FinishReason::stop : output.finish_reason;
    delta.error_message = output.error_message;
  }
  if (reasoning_parser_) {
    ReasoningDelta rest = reasoning_parser_->flush();
    delta.reasoning += rest.reasoning;
    reasoning_ += rest.reasoning;
    emit_content(rest.content, delta);
  }
  finish_tool_calls(delta);
  delta.finish_reason = finish_reason_;
  return delta;
}

}  // namespace troupe::http
