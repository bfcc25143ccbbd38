#include "bench/bench_log.hpp"

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace troupe::bench {

namespace {

using Clock = std::chrono::steady_clock;

// Shared between the phases and the watchdog.
std::mutex g_mutex;
std::vector<BenchRecord> g_records;
std::string g_kind, g_out, g_command, g_device;
double g_time_limit_s = 0;
const Clock::time_point g_start = Clock::now();

void write_records_locked();

}  // namespace

void init_log(std::string kind, std::string out, std::string command, double time_limit_s) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_kind = std::move(kind);
  g_out = std::move(out);
  g_command = std::move(command);
  g_time_limit_s = time_limit_s;
}

void set_log_device(std::string device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_device = std::move(device);
}

double elapsed_s() { return std::chrono::duration<double>(Clock::now() - g_start).count(); }
double remaining_s() { return g_time_limit_s - elapsed_s(); }

void say(const char* fmt, ...) {
  std::printf("[%6.1fs] ", elapsed_s());
  va_list ap;
  va_start(ap, fmt);
  std::vprintf(fmt, ap);
  va_end(ap);
  std::printf("\n");
  std::fflush(stdout);
}

namespace {
void write_records_locked() {
  auto path = write_bench_records(g_records, g_kind, g_out, g_command, g_device);
  if (path.ok()) say("records written to %s", path->c_str());
  else say("could not write records: %s", path.error().message.c_str());
}
}  // namespace

void add_record(BenchRecord r) {
  std::lock_guard<std::mutex> lock(g_mutex);
  say("RESULT %-32s %12.4f %-10s limit %s fraction %s  (%s)", r.metric.c_str(), r.value, r.unit.c_str(),
      r.limit ? std::to_string(*r.limit).c_str() : "-",
      r.fraction_of_limit ? std::to_string(*r.fraction_of_limit).c_str() : "-", r.note.c_str());
  g_records.push_back(std::move(r));
  write_records_locked();
}

void start_watchdog() {
  std::thread([] {
    while (remaining_s() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::lock_guard<std::mutex> lock(g_mutex);
    say("time limit of %.0f s reached: writing what was measured and exiting", g_time_limit_s);
    write_records_locked();
    std::fflush(stdout);
    std::_Exit(3);
  }).detach();
}

void finish(int code) {
  std::lock_guard<std::mutex> lock(g_mutex);  // no record is half written
  std::fflush(stdout);
  std::_Exit(code);  // skips freeing device tensors one by one; the watchdog may still be sleeping
}

}  // namespace troupe::bench
