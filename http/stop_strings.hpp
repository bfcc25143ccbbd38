#pragma once
// Stop strings over streamed text: text is released only once no stop string can start in it,
// so a stop string split across chunks is never leaked.
#include <string>
#include <vector>

namespace troupe::http {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stop_strings, bool include_stop = false);

  struct Step {
    std::string text;      // safe to emit now
    bool stopped = false;  // a stop string matched; text ends right before it (or with it)
  };
  // !can_stop (min_tokens not yet reached): the text passes unchecked and nothing is held back.
  Step push(const std::string& text, bool can_stop = true);
  // End of generation: whatever is still held back.
  std::string flush();
  bool is_stopped() const { return stopped_; }
  const std::vector<std::string>& stop_strings() const { return stop_strings_; }

 private:
  std::vector<std::string> stop_strings_;
  bool include_stop_;  // include_stop_str_in_output: the matched stop string ends the text
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace troupe::http
