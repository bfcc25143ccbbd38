#include "runtime/thread_pool.hpp"

#include <algorithm>

namespace troupe {

namespace {
// The chunk `index` of `num_chunks` equal parts of [0, n).
void chunk_range(int64_t n, int64_t num_chunks, int64_t index, int64_t* begin, int64_t* end) {
  *begin = n * index / num_chunks;
  *end = n * (index + 1) / num_chunks;
}
}  // namespace

ThreadPool::ThreadPool(int64_t num_threads) {
  if (num_threads <= 0) num_threads = std::max<int64_t>(1, std::thread::hardware_concurrency());
  for (int64_t i = 1; i < num_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
  if (n <= 0) return;
  int64_t num_chunks = std::min<int64_t>(num_threads(), (n + std::max<int64_t>(1, min_chunk) - 1) /
                                                           std::max<int64_t>(1, min_chunk));
  if (num_chunks <= 1) {
    fn(0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    task_ = &fn;
    task_n_ = n;
    num_chunks_ = num_chunks;
    num_pending_ = num_chunks - 1;
    ++generation_;
  }
  wake_.notify_all();
  int64_t begin = 0, end = 0;
  chunk_range(n, num_chunks, 0, &begin, &end);
  fn(begin, end);
  std::unique_lock<std::mutex> lock(mutex_);
  done_.wait(lock, [this] { return num_pending_ == 0; });
  task_ = nullptr;
}

void ThreadPool::worker_loop(int64_t index) {
  int64_t seen_generation = 0;
  while (true) {
    const std::function<void(int64_t, int64_t)>* task = nullptr;
    int64_t n = 0, num_chunks = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen_generation; });
      if (stop_) return;
      seen_generation = generation_;
      task = task_;
      n = task_n_;
      num_chunks = num_chunks_;
    }
    if (index < num_chunks) {
      int64_t begin = 0, end = 0;
      chunk_range(n, num_chunks, index, &begin, &end);
      (*task)(begin, end);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--num_pending_ == 0) done_.notify_one();
    }
  }
}

}  // namespace troupe
