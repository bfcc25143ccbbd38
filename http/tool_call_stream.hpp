#pragma once
// Streams one choice's tool calls as OpenAI deltas, as vLLM does: fed the content text as it
// arrives, it re-reads the text with its ToolParser and sends what the snapshot holds beyond what
// was sent: content deltas, then per call a first delta (index, id, type function, name) and
// argument fragments. Content that is only space is held until something else comes (dropped
// when calls follow). When the text turns out malformed, the rest of it goes out as content and
// the stream passes text through from then on (calls already sent stay sent).
#include <memory>
#include <string>
#include <vector>

#include "http/tool_parser.hpp"

namespace troupe::http {

struct ToolCall {
  std::string id;
  std::string name;
  std::string arguments;  // a JSON object as text
};

struct ToolCallDelta {
  int index = 0;
  bool is_first = false;  // the first delta of the call: carries id and name
  std::string id;
  std::string name;
  std::string arguments;  // the next fragment
};

struct ToolStreamDelta {
  std::string content;
  std::vector<ToolCallDelta> tool_calls;
};

class ToolCallStream {
 public:
  explicit ToolCallStream(std::unique_ptr<ToolParser> parser);
  // parallel_tool_calls: false sets 1: calls past the first are not sent (-1: no limit).
  void set_max_calls(int max_calls) { max_calls_ = max_calls; }
  int max_calls() const { return max_calls_; }

  ToolStreamDelta push(const std::string& text);
  // The text ended: sends what is left (an unfinished call makes the rest content).
  ToolStreamDelta finish();

  int num_calls_sent() const { return int(sent_.size()); }
  const std::string& text() const { return text_; }
  const ToolParser& parser() const { return *parser_; }

 private:
  ToolStreamDelta send(const ToolParse& snapshot, bool is_final);

  std::unique_ptr<ToolParser> parser_;
  std::string text_;
  bool passthrough_ = false;
  int max_calls_ = -1;
  size_t content_sent_ = 0;  // bytes of the snapshot's content sent
  std::vector<ToolCall> sent_;  // per call: id, name and the arguments sent so far
};

}  // namespace troupe::http
