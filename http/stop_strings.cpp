#include "http/stop_strings.hpp"

#include <algorithm>

namespace troupe::http {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stop_strings, bool include_stop)
    : include_stop_(include_stop) {
  for (auto& s : stop_strings)
    if (!s.empty()) stop_strings_.push_back(std::move(s));
}

StopStringMatcher::Step StopStringMatcher::push(const std::string& text, bool can_stop) {
  Step step;
  if (stopped_) return step;
  pending_ += text;
  if (!can_stop) {
    step.text.swap(pending_);
    return step;
  }
  // Earliest match of any stop string wins (the first listed among those starting there).
  size_t first = std::string::npos, length = 0;
  for (const auto& stop : stop_strings_) {
    const size_t at = pending_.find(stop);
    if (at < first) {
      first = at;
      length = stop.size();
    }
  }
  if (first != std::string::npos) {
    step.text = pending_.substr(0, include_stop_ ? first + length : first);
    step.stopped = stopped_ = true;
    pending_.clear();
    return step;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const auto& stop : stop_strings_) {
    size_t max_len = std::min(stop.size() - 1, pending_.size());
    for (size_t len = max_len; len > hold; --len) {
      if (pending_.compare(pending_.size() - len, len, stop, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  step.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return step;
}

std::string StopStringMatcher::flush() {
  std::string out;
  out.swap(pending_);
  return stopped_ ? std::string() : out;
}

}  // namespace troupe::http
