#include "http/tool_call_stream.hpp"

#include "http/json_scan.hpp"

namespace troupe::http {

ToolCallStream::ToolCallStream(std::unique_ptr<ToolParser> parser) : parser_(std::move(parser)) {}

ToolStreamDelta ToolCallStream::push(const std::string& text) {
  if (passthrough_) return ToolStreamDelta{text, {}};
  text_ += text;
  return send(parser_->parse(text_, /*is_final=*/false), false);
}

ToolStreamDelta ToolCallStream::finish() {
  if (passthrough_) return {};
  return send(parser_->parse(text_, /*is_final=*/true), true);
}

ToolStreamDelta ToolCallStream::send(const ToolParse& snapshot, bool is_final) {
  ToolStreamDelta delta;
  const std::string& content = snapshot.content;
  // Space-only content waits: it is dropped when calls follow, as the whole parse drops it.
  const bool only_space = skip_json_space(content, 0) >= content.size();
  if (snapshot.is_malformed) {
    if (content_sent_ < content.size()) delta.content = content.substr(content_sent_);
    if (snapshot.malformed_at < text_.size()) delta.content += text_.substr(snapshot.malformed_at);
    passthrough_ = true;
    return delta;
  }
  const bool release = !only_space || (is_final && sent_.empty() && snapshot.calls.empty());
  if (release && content.size() > content_sent_) {
    delta.content = content.substr(content_sent_);
    content_sent_ = content.size();
  }
  for (size_t i = 0; i < snapshot.calls.size(); ++i) {
    const ParsedToolCall& call = snapshot.calls[i];
    if (!call.has_name) break;
    if (i >= sent_.size()) {
      sent_.push_back(ToolCall{make_tool_call_id(), call.name, call.arguments});
      delta.tool_calls.push_back(ToolCallDelta{int(i), true, sent_[i].id, call.name, call.arguments});
      continue;
    }
    std::string& args_sent = sent_[i].arguments;
    // NOTE: snapshots only grow, so the arguments extend what was sent.
    if (call.arguments.size() > args_sent.size() && call.arguments.compare(0, args_sent.size(), args_sent) == 0) {
      delta.tool_calls.push_back(ToolCallDelta{int(i), false, "", "", call.arguments.substr(args_sent.size())});
      args_sent = call.arguments;
    }
  }
  return delta;
}

}  // namespace troupe::http
