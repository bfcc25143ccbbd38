#pragma once
// Captures the messages of one component logger (runtime/logging.hpp) for a test's lifetime.
// Declare it before the TestServer so it outlives every request thread.
#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <spdlog/sinks/base_sink.h>

#include "runtime/logging.hpp"

namespace troupe::testing {

class LineSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> lock(mutex_);
    return lines_;
  }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override { lines_.emplace_back(msg.payload.data(), msg.payload.size()); }
  void flush_() override {}

 private:
  std::vector<std::string> lines_;
};

class LogCapture {
 public:
  explicit LogCapture(const std::string& component)
      : logger_(log::get(component)), sink_(std::make_shared<LineSink>()) {
    logger_->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = logger_->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::vector<std::string> lines() { return sink_->lines(); }

 private:
  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<LineSink> sink_;
};

}  // namespace troupe::testing
