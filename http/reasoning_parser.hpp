#pragma once
// deepseek_r1 reasoning split: text inside <think>...</think> goes to reasoning_content, the rest
// to content. Starts inside the block when the chat template already opened <think> (the prompt
// ends with it). Streaming-safe: a tag split across chunks is held back until it is decided.
#include <memory>
#include <string>

namespace troupe::http {

struct ReasoningDelta {
  std::string reasoning;
  std::string content;
};

class ReasoningParser {
 public:
  explicit ReasoningParser(bool starts_inside_think);
  // Known names: "deepseek_r1". Null for "" or an unknown name.
  static std::unique_ptr<ReasoningParser> create(const std::string& name, const std::string& prompt_text);
  static bool is_known(const std::string& name);

  ReasoningDelta push(const std::string& text);
  ReasoningDelta flush();

 private:
  bool inside_;
  std::string pending_;
};

}  // namespace troupe::http
