#pragma once
// Progress of a weight load: bytes done out of a total, the rate, the time left. A terminal gets
// one bar redrawn in place; a log (a pod, a file) gets a line every few seconds and a last line
// with the whole load's rate, so an operator of a 690 GB model sees it move.
//
//   loading weights: 12.4 / 345.0 GB (3%), 3.1 GB/s, about 107 s left
//   loaded weights: 345.0 GB in 110.2 s (3.13 GB/s)
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace troupe {

class LoadProgress {
 public:
  using Clock = std::function<double()>;  // seconds, monotonic
  // Each report. `final` is true once, for the summary `finish` prints.
  using Sink = std::function<void(const std::string& line, bool final)>;

  // `total_bytes` may be an estimate (0: unknown; the line then shows no share and no time left).
  LoadProgress(uint64_t total_bytes, Sink sink, Clock clock, double interval_s = 5.0);

  // Progress to stderr: a bar redrawn with '\r' when stderr is a terminal, else the "engine"
  // logger's info lines every `interval_s`.
  static LoadProgress to_terminal_or_log(uint64_t total_bytes, double interval_s = 5.0);

  void add(uint64_t bytes);  // thread-safe; reports when `interval_s` has passed since the last
  void finish();             // the summary line; later calls do nothing

  uint64_t done_bytes() const;
  // The current line (without reporting it).
  std::string line() const;

 private:
  std::string line_locked(double now) const;

  uint64_t total_ = 0;
  Sink sink_;
  Clock clock_;
  double interval_s_;
  double start_s_;
  double last_report_s_;
  uint64_t done_ = 0;
  bool finished_ = false;
  mutable std::mutex mutex_;
};

}  // namespace troupe
