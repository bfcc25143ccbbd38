#include "bench/step_trace.hpp"

#include <cxxabi.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <map>

namespace troupe::bench {

std::vector<KernelSpan> last_step(const std::vector<KernelSpan>& spans, uint64_t gap_ns) {
  if (spans.empty()) return {};
  size_t first = 0;
  uint64_t reach = spans[0].end_ns;  // the latest end so far
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].start_ns > reach + gap_ns) first = i;
    reach = std::max(reach, spans[i].end_ns);
  }
  return {spans.begin() + std::ptrdiff_t(first), spans.end()};
}

StepTrace summarize(const std::vector<KernelSpan>& step) {
  StepTrace t;
  if (step.empty()) return t;
  // Sweep over the interval ends: busy time, and time with exactly one kernel running.
  std::vector<std::pair<uint64_t, int>> events;  // (time, +index + 1 at a start, -(index + 1) at an end)
  for (size_t i = 0; i < step.size(); ++i) {
    if (step[i].end_ns <= step[i].start_ns) continue;  // no time, no share of the sweep
    events.push_back({step[i].start_ns, int(i) + 1});
    events.push_back({step[i].end_ns, -(int(i) + 1)});
  }
  if (events.empty()) return t;
  std::sort(events.begin(), events.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second < b.second;  // ends before starts at a tie
  });
  std::map<std::string, StepTrace::Share> shares;
  std::vector<int> running;
  uint64_t last = events.front().first, first_start = events.front().first, last_end = 0;
  for (const auto& [time, id] : events) {
    if (!running.empty()) {
      t.busy_us += double(time - last) / 1e3;
      if (running.size() == 1) shares[step[size_t(running[0])].name].exposed_us += double(time - last) / 1e3;
    }
    if (id > 0) {
      running.push_back(id - 1);
    } else {
      running.erase(std::find(running.begin(), running.end(), -id - 1));
      last_end = std::max(last_end, time);
    }
    last = time;
  }
  t.span_us = double(last_end - first_start) / 1e3;
  std::vector<size_t> by_start(step.size());
  for (size_t i = 0; i < step.size(); ++i) by_start[i] = i;
  std::stable_sort(by_start.begin(), by_start.end(),
                   [&](size_t a, size_t b) { return step[a].start_ns < step[b].start_ns; });
  uint64_t reach = first_start;  // the latest end so far
  for (size_t i : by_start) {
    const KernelSpan& s = step[i];
    StepTrace::Share& share = shares[s.name];
    share.name = s.name;
    share.count += 1;
    if (s.end_ns <= s.start_ns) continue;
    share.sum_us += double(s.end_ns - s.start_ns) / 1e3;
    if (s.end_ns > reach) {
      share.marginal_us += double(s.end_ns - reach) / 1e3;
      reach = s.end_ns;
    }
  }
  for (auto& [name, share] : shares) t.by_name.push_back(share);
  std::sort(t.by_name.begin(), t.by_name.end(), [](const auto& a, const auto& b) {
    return a.marginal_us != b.marginal_us ? a.marginal_us > b.marginal_us : a.sum_us > b.sum_us;
  });
  return t;
}

std::string short_kernel_name(const std::string& raw) {
  std::string name = raw;
  if (name.rfind("_Z", 0) == 0) {  // CUPTI may report the mangled name
    int status = 0;
    char* demangled = abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status);
    if (status == 0 && demangled) name = demangled;
    std::free(demangled);
  }
  for (const char* anonymous : {"(anonymous namespace)", "<unnamed>"})
    for (size_t at = name.find(anonymous); at != std::string::npos; at = name.find(anonymous))
      name.replace(at, std::string(anonymous).size(), "anonymous");
  const std::string head = name.substr(0, name.find_first_of("<("));
  const size_t colon = head.rfind("::"), space = head.rfind(' ');
  const size_t from = colon != std::string::npos ? colon + 2 : space != std::string::npos ? space + 1 : 0;
  std::string out = head.substr(from);
  for (char& ch : out)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_') ch = '_';
  return out.empty() ? "kernel" : out;
}

bool write_spans_csv(const std::vector<KernelSpan>& spans, const std::string& path) {
  std::ofstream out(path);
  if (!out) return false;
  out << "name,start_us,duration_us\n";
  const uint64_t origin = spans.empty() ? 0 : spans.front().start_ns;
  for (const KernelSpan& s : spans) {
    std::string name = s.name;
    std::replace(name.begin(), name.end(), ',', ';');
    out << name << ',' << double(s.start_ns - origin) / 1e3 << ','
        << (s.end_ns > s.start_ns ? double(s.end_ns - s.start_ns) / 1e3 : 0.0) << '\n';
  }
  return bool(out);
}

std::string suffixed_path(const std::string& path, const std::string& suffix) {
  const size_t slash = path.find_last_of('/');
  const size_t name = slash == std::string::npos ? 0 : slash + 1;
  const size_t dot = path.find('.', name + 1);  // a name's leading dot is no extension
  if (dot == std::string::npos) return path + suffix;
  return path.substr(0, dot) + suffix + path.substr(dot);
}

std::string traced_csv_path(const std::string& path, int64_t batch) {
  return batch == 1 ? path : suffixed_path(path, "_b" + std::to_string(batch));
}

}  // namespace troupe::bench
