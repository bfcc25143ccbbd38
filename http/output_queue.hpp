#pragma once
// Hands engine outputs from the engine's thread (callback) to the HTTP thread that owns the
// request. One queue per HTTP request, shared by its n choices.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "engine/serving_engine.hpp"

namespace troupe::http {

struct QueuedOutput {
  int choice = 0;
  GenerationOutput output;
  std::chrono::steady_clock::time_point at;
};

class OutputQueue {
 public:
  void push(int choice, const GenerationOutput& output) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      items_.push_back(QueuedOutput{choice, output, std::chrono::steady_clock::now()});
    }
    ready_.notify_one();
  }

  // Moves everything queued into `out`, waiting up to `timeout` for the first item.
  bool pop_all(std::deque<QueuedOutput>& out, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (!ready_.wait_for(lock, timeout, [&] { return !items_.empty(); })) return false;
    while (!items_.empty()) {
      out.push_back(std::move(items_.front()));
      items_.pop_front();
    }
    return true;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<QueuedOutput> items_;
};

}  // namespace troupe::http
