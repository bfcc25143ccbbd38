#pragma once
// Test support: collects the outputs of engine requests by request id and waits for them to end.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/serving_engine.hpp"

namespace troupe::testing {

struct OutputCollector {
  std::mutex mutex;
  std::condition_variable cv;
  std::map<std::string, std::vector<int32_t>> tokens;
  std::map<std::string, std::string> finish;      // the finish reason, once ended
  std::map<std::string, std::string> errors;      // its error message, if any
  std::map<std::string, int64_t> num_cached;      // from the last output

  OutputCallback callback(const std::string& id) {
    return [this, id](const GenerationOutput& out) {
      std::lock_guard lock(mutex);
      for (int32_t t : out.new_token_ids) tokens[id].push_back(t);
      num_cached[id] = out.num_cached_tokens;
      if (out.finish_reason != FinishReason::none) {
        finish[id] = to_string(out.finish_reason);
        errors[id] = out.error_message;
        cv.notify_all();
      }
    };
  }
  bool wait_all(size_t n, std::chrono::seconds timeout = std::chrono::seconds(120)) {
    std::unique_lock lock(mutex);
    return cv.wait_for(lock, timeout, [&] { return finish.size() >= n; });
  }
};

}  // namespace troupe::testing
