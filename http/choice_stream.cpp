#include "http/choice_stream.hpp"

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
    StopStringMatcher::Step step = stop_.push(detokenizer_->push(id));
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
