#include "http/connection_pool.hpp"

#include <algorithm>

namespace troupe::http {

ConnectionPool::ConnectionPool(size_t num_initial_threads, size_t max_threads)
    : max_threads_(std::max<size_t>(1, max_threads)) {
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < std::min(num_initial_threads, max_threads_); ++i) start_thread();
}

ConnectionPool::~ConnectionPool() { shutdown(); }

void ConnectionPool::start_thread() {
  threads_.emplace_back([this] { work(); });
}

void ConnectionPool::enqueue(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    tasks_.push_back(std::move(task));
    // Every thread busy (each holds a connection): one more, so this client does not wait.
    if (num_idle_ < tasks_.size() && threads_.size() < max_threads_) start_thread();
  }
  ready_.notify_one();
}

void ConnectionPool::shutdown() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
    threads.swap(threads_);
  }
  ready_.notify_all();
  for (auto& thread : threads) thread.join();
}

size_t ConnectionPool::num_threads() const {
  std::lock_guard lock(mutex_);
  return threads_.size();
}

void ConnectionPool::work() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      ++num_idle_;
      ready_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
      --num_idle_;
      // NOTE: as httplib's ThreadPool, queued connections are still served on shutdown.
      if (tasks_.empty()) return;
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace troupe::http
