#pragma once
// The HTTP server's threads: one per open connection, grown on demand up to a cap.
//
// httplib (0.11) runs each accepted connection as one task that holds its thread for the
// connection's life: an idle keep-alive connection for its keep-alive timeout, a stream until it
// ends, a client trickling its headers for as long as it trickles. A fixed pool lets a few
// thousand idle or slow sockets queue every other client behind them; this pool starts a thread
// whenever none is idle, so a new client is served at once while `max_threads` is not reached.
// NOTE: it never shrinks (a thread that served a connection waits for the next); past
// `max_threads` connections queue as in a fixed pool.
#include <httplib.h>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace troupe::http {

class ConnectionPool final : public httplib::TaskQueue {
 public:
  ConnectionPool(size_t num_initial_threads, size_t max_threads);
  ~ConnectionPool() override;

  void enqueue(std::function<void()> task) override;
  void shutdown() override;

  size_t num_threads() const;

 private:
  void start_thread();  // holds mutex_
  void work();

  const size_t max_threads_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> tasks_;
  std::vector<std::thread> threads_;
  size_t num_idle_ = 0;
  bool stopping_ = false;
};

}  // namespace troupe::http
