#include "http/reasoning_parser.hpp"

#include <algorithm>

namespace troupe::http {
namespace {

constexpr const char* kOpen = "<think>";
constexpr const char* kClose = "</think>";

// Length of the longest suffix of text that is a proper prefix of tag.
size_t partial_tag_suffix(const std::string& text, const std::string& tag) {
  size_t max_len = std::min(tag.size() - 1, text.size());
  for (size_t len = max_len; len > 0; --len)
    if (text.compare(text.size() - len, len, tag, 0, len) == 0) return len;
  return 0;
}

}  // namespace

ReasoningParser::ReasoningParser(bool starts_inside_think) : inside_(starts_inside_think) {}

bool ReasoningParser::is_known(const std::string& name) { return name == "deepseek_r1"; }

std::unique_ptr<ReasoningParser> ReasoningParser::create(const std::string& name,
                                                         const std::string& prompt_text) {
  if (!is_known(name)) return nullptr;
  // The template opened the block when the prompt ends with <think> (and maybe whitespace).
  size_t end = prompt_text.find_last_not_of(" \t\r\n");
  std::string trimmed = end == std::string::npos ? "" : prompt_text.substr(0, end + 1);
  std::string open = kOpen;
  bool inside = trimmed.size() >= open.size() &&
                trimmed.compare(trimmed.size() - open.size(), open.size(), open) == 0;
  return std::make_unique<ReasoningParser>(inside);
}

ReasoningDelta ReasoningParser::push(const std::string& text) {
  ReasoningDelta delta;
  pending_ += text;
  while (true) {
    const std::string tag = inside_ ? kClose : kOpen;
    std::string& out = inside_ ? delta.reasoning : delta.content;
    size_t at = pending_.find(tag);
    if (at != std::string::npos) {
      out += pending_.substr(0, at);
      pending_.erase(0, at + tag.size());
      inside_ = !inside_;
      continue;
    }
    size_t hold = partial_tag_suffix(pending_, tag);
    out += pending_.substr(0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
    return delta;
  }
}

ReasoningDelta ReasoningParser::flush() {
  ReasoningDelta delta;
  (inside_ ? delta.reasoning : delta.content) = pending_;
  pending_.clear();
  return delta;
}

}  // namespace troupe::http
