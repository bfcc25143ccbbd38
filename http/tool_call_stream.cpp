#include "http/tool_call_stream.hpp"

#include "http/json_scan.hpp"

namespace troupe::http {

ToolCallStream::ToolCallStream(std::unique_ptr<ToolParser> parser) : parser_(std::move(parser)) {}

namespace {

// Bytes of s up to a UTF-8 sequence cut at its end (sent once the rest arrives).
size_t utf8_complete_length(const std::string& s, size_t from) {
  size_t n = s.size();
  if (from >= n) return n;
  for (size_t back = 1; back <= 3 && back <= n - from; ++back) {
    unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

}  // namespace

ToolStreamDelta ToolCallStream::push(const std::string& text) {
  text_ += text;  // the whole text, for the whole parse at the end
  if (passthrough_) return ToolStreamDelta{text, {}};
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
  const size_t content_end = is_final ? content.size() : utf8_complete_length(content, content_sent_);
  if (release && content_end > content_sent_) {
    delta.content = content.substr(content_sent_, content_end - content_sent_);
    content_sent_ = content_end;
  }
  for (size_t i = 0; i < snapshot.calls.size(); ++i) {
    const ParsedToolCall& call = snapshot.calls[i];
    if (!call.has_name || (max_calls_ >= 0 && int(i) >= max_calls_)) break;
    const bool whole = is_final || call.is_complete;
    if (i >= sent_.size()) {
      std::string args = call.arguments.substr(0, whole ? call.arguments.size() : utf8_complete_length(call.arguments, 0));
      sent_.push_back(ToolCall{make_tool_call_id(), call.name, args});
      delta.tool_calls.push_back(ToolCallDelta{int(i), true, sent_[i].id, call.name, args});
      continue;
    }
    std::string& args_sent = sent_[i].arguments;
    // NOTE: snapshots only grow, so the arguments extend what was sent.
    if (call.arguments.size() <= args_sent.size() || call.arguments.compare(0, args_sent.size(), args_sent) != 0) continue;
    const size_t end = whole ? call.arguments.size() : utf8_complete_length(call.arguments, args_sent.size());
    if (end > args_sent.size()) {
      delta.tool_calls.push_back(ToolCallDelta{int(i), false, "", "", call.arguments.substr(args_sent.size(), end - args_sent.size())});
      args_sent = call.arguments.substr(0, end);
    }
  }
  return delta;
}

}  // namespace troupe::http
