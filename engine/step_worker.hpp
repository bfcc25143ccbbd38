#pragma once
// StepWorker: the thread that runs one device's engine steps, in the order they were submitted,
// so the engine thread can schedule step N+1 and postprocess step N-1 (stop checks, callbacks,
// detokenizing) while step N runs: overlapped scheduling (SGLang's overlap scheduler, vLLM's
// async scheduling). It plays the device's stream: every forward and sampling of the engine runs
// here, none on the engine thread.
//
//   engine thread:  schedule N+1 -> submit(N+1) -> wait(N) -> postprocess N -> schedule N+2 ...
//   worker thread:  ... run N: forward, sample -> last samples | run N+1: inputs from them ...
//
// A step whose decodes were scheduled before their input token was sampled reads those tokens
// from the samples of the step that ran just before it (the worker's, passed to the step), as
// vLLM's async scheduling reads them from a device tensor and SGLang from its future-token map:
// the engine thread never waits for them.
//
// Thread-safety: submit and busy_seconds from one thread (the engine's). A step's exception is
// rethrown by its future's get(); the samples it leaves are then empty.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/backend.hpp"

namespace troupe {

class StepWorker {
 public:
  // Gets the token ids the previous step sampled (its rows in order; empty after a failed step)
  // and returns the ones it sampled.
  using Step = std::function<std::vector<int32_t>(const std::vector<int32_t>& previous_samples)>;

  explicit StepWorker(Backend& backend);  // the thread computes on the backend's device
  ~StepWorker();                          // runs what was submitted, then joins
  StepWorker(const StepWorker&) = delete;
  StepWorker& operator=(const StepWorker&) = delete;

  // Runs `step` after every step submitted before it; the future is ready when it has run.
  std::future<void> submit(Step step);
  // Seconds the thread spent running steps (the rest it waited for the engine thread).
  double busy_seconds() const { return busy_ns_.load() * 1e-9; }

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::packaged_task<void()>> queue_;
  bool stopping_ = false;
  std::vector<int32_t> last_samples_;  // worker thread only
  std::atomic<int64_t> busy_ns_{0};
  std::thread thread_;  // last: starts after the members above exist
};

}  // namespace troupe
