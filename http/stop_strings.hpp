#pragma once
// Stop strings over streamed text: text is released only once no stop string can start in it,
// so a stop string split across chunks is never leaked.
#include <string>
#include <vector>

namespace troupe::http {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stop_strings);

  struct Step {
    std::string text;      // safe to emit now
    bool stopped = false;  // a stop string matched; text ends right before it
  };
  Step push(const std::string& text);
  // End of generation: whatever is still held back.
  std::string flush();
  bool is_stopped() const { return stopped_; }

 private:
  std::vector<std::string> stop_strings_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace troupe::http
