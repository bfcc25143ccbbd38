#pragma once
// The GPU benchmark's log: timestamped lines, BenchRecords written to JSON after every one (so a
// run cut short keeps what it measured), and a watchdog that writes and exits at the time limit.
#include <string>

#include "runtime/bench_record.hpp"

namespace troupe::bench {

// kind: the records file's kind ("gpu_decode"); out: its path ("" = bench/results/KIND_DATE.json).
void init_log(std::string kind, std::string out, std::string command, double time_limit_s);
void set_log_device(std::string device);
double elapsed_s();
double remaining_s();  // until the time limit
void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// Prints the record and rewrites the records file.
void add_record(BenchRecord r);
// Writes the records and exits with code 3 once the time limit passes.
void start_watchdog();
[[noreturn]] void finish(int code);

}  // namespace troupe::bench
