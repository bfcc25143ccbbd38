#include "runtime/load_progress.hpp"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>

#include "runtime/logging.hpp"

namespace troupe {
namespace {

std::string gb(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", double(bytes) / 1e9);
  return buf;
}

double steady_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

LoadProgress::LoadProgress(uint64_t total_bytes, Sink sink, Clock clock, double interval_s)
    : total_(total_bytes), sink_(std::move(sink)), clock_(std::move(clock)), interval_s_(interval_s) {
  start_s_ = clock_();
  last_report_s_ = start_s_;
}

LoadProgress LoadProgress::to_terminal_or_log(uint64_t total_bytes, double interval_s) {
  if (isatty(STDERR_FILENO)) {
    // A bar: the same line redrawn, finished by a newline.
    return LoadProgress(
        total_bytes,
        [](const std::string& line, bool final) {
          std::fprintf(stderr, "\r%s\033[K%s", line.c_str(), final ? "\n" : "");
          std::fflush(stderr);
        },
        steady_seconds, std::min(interval_s, 0.25));
  }
  return LoadProgress(
      total_bytes, [](const std::string& line, bool) { log::get("engine")->info("{}", line); }, steady_seconds,
      interval_s);
}

void LoadProgress::add(uint64_t bytes) {
  std::string report;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ += bytes;
    if (finished_) return;
    const double now = clock_();
    if (now - last_report_s_ < interval_s_) return;
    last_report_s_ = now;
    report = line_locked(now);
  }
  sink_(report, false);
}

void LoadProgress::finish() {
  std::string report;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (finished_) return;
    finished_ = true;
    const double seconds = clock_() - start_s_;
    char buf[128];
    std::snprintf(buf, sizeof buf, "loaded weights: %s GB in %.1f s (%.2f GB/s)", gb(done_).c_str(), seconds,
                  seconds > 0 ? double(done_) / 1e9 / seconds : 0.0);
    report = buf;
  }
  sink_(report, true);
}

uint64_t LoadProgress::done_bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return done_;
}

std::string LoadProgress::line() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return line_locked(clock_());
}

std::string LoadProgress::line_locked(double now) const {
  const double seconds = now - start_s_;
  const double rate = seconds > 0 ? double(done_) / seconds : 0.0;  // bytes per second
  std::string line = "loading weights: " + gb(done_);
  if (total_ > 0) {
    const uint64_t shown = std::min(done_, total_);
    line += " / " + gb(total_) + " GB (" + std::to_string(int(100.0 * double(shown) / double(total_))) + "%)";
  } else {
    line += " GB";
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, ", %.1f GB/s", rate / 1e9);
  line += buf;
  if (total_ > 0 && rate > 0 && done_ < total_) {
    std::snprintf(buf, sizeof buf, ", about %.0f s left", std::ceil(double(total_ - done_) / rate));
    line += buf;
  }
  return line;
}

}  // namespace troupe
