#include "engine/step_worker.hpp"

#include <chrono>

namespace troupe {

StepWorker::StepWorker(Backend& backend) : thread_([this, &backend] {
  backend.bind_thread();
  run();
}) {}

StepWorker::~StepWorker() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::future<void> StepWorker::submit(Step step) {
  std::packaged_task<void()> task([this, step = std::move(step)] {
    std::vector<int32_t> previous = std::move(last_samples_);
    last_samples_.clear();  // a step that throws leaves none
    last_samples_ = step(previous);
  });
  std::future<void> done = task.get_future();
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(task));
  }
  wake_.notify_one();
  return done;
}

void StepWorker::run() {
  for (;;) {
    std::packaged_task<void()> task;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    const auto begin = std::chrono::steady_clock::now();
    task();  // an exception goes to the task's future
    busy_ns_.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - begin).count());
  }
}

}  // namespace troupe
