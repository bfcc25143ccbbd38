#include "bench/kernel_trace.hpp"

#include <cuda_runtime.h>
#include <cupti.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string>

#include "bench/bench_log.hpp"

namespace troupe::bench {
namespace {

std::mutex g_mutex;
std::vector<KernelSpan> g_spans;
constexpr size_t kBufferBytes = size_t(8) << 20;

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBufferBytes));
  *size = *buffer ? kBufferBytes : 0;
  *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* record = nullptr;
  std::lock_guard lock(g_mutex);
  while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) continue;
    // The record layout of the CUPTI this program was built with (the bundle carries its library).
    const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(record);
    g_spans.push_back({k->name ? k->name : "?", k->start, k->end});
  }
  std::free(buffer);
}

bool cupti_ok(CUptiResult r, const char* what) {
  if (r == CUPTI_SUCCESS) return true;
  const char* text = nullptr;
  cuptiGetResultString(r, &text);
  say("CUPTI %s: %s", what, text ? text : "error");
  return false;
}

}  // namespace

bool start_kernel_trace() {
  {
    std::lock_guard lock(g_mutex);
    g_spans.clear();
  }
  return cupti_ok(cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed), "register callbacks") &&
         cupti_ok(cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "enable kernel records");
}

std::vector<KernelSpan> stop_kernel_trace() {
  cudaDeviceSynchronize();
  cupti_ok(cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED), "flush");
  cupti_ok(cuptiActivityDisable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL), "disable kernel records");
  std::lock_guard lock(g_mutex);
  std::vector<KernelSpan> spans = std::move(g_spans);
  g_spans.clear();
  std::sort(spans.begin(), spans.end(), [](const KernelSpan& a, const KernelSpan& b) { return a.start_ns < b.start_ns; });
  return spans;
}

void record_traced_step(const std::function<bool()>& steps, const std::string& stem, const std::string& csv_path,
                        uint64_t gap_ns) {
  if (!start_kernel_trace()) return;
  const bool ok = steps();
  const std::vector<KernelSpan> spans = stop_kernel_trace();
  // Decode steps are apart by the host's work (about 0.1 ms) and the sync; kernels of a step by < 20 us.
  const std::vector<KernelSpan> step = last_step(spans, gap_ns);
  if (!ok || step.empty()) {
    say("kernel trace: %zu kernels recorded, no step", spans.size());
    return;
  }
  if (!write_spans_csv(step, csv_path)) say("kernel trace: cannot write %s", csv_path.c_str());
  const StepTrace trace = summarize(step);
  say("kernel trace: %zu kernels, span %.1f us, some kernel running %.1f us (CSV %s)", step.size(), trace.span_us,
      trace.busy_us, csv_path.c_str());
  add_record({stem + "_span", trace.span_us, "us", {}, {},
              "one traced step (CUPTI kernel records; a decode step: a graph replay with its programmatic "
              "overlaps): first kernel start to last kernel end",
              {{"kernels", double(step.size())}}});
  add_record({stem + "_busy", trace.busy_us, "us", trace.span_us, trace.span_us > 0 ? trace.busy_us / trace.span_us : 0.0,
              "the time some kernel of the traced step ran (the union of their intervals); limit = its span"});
  for (size_t i = 0; i < trace.by_name.size() && i < 16; ++i) {
    const StepTrace::Share& share = trace.by_name[i];
    const std::string name = short_kernel_name(share.name);
    say("  %-40s x%-4lld %8.1f us marginal, %8.1f us summed, %7.1f us alone", name.c_str(), (long long)share.count,
        share.marginal_us, share.sum_us, share.exposed_us);
    add_record({stem + "_" + name, share.marginal_us, "us", trace.span_us,
                trace.span_us > 0 ? share.marginal_us / trace.span_us : 0.0,
                "the traced step's kernels of this name: how far each moved the step's end (its end past the "
                "latest end before it; bench/step_trace.hpp), added; the names' values add up to the span, the "
                "limit. sum_us: their durations added (a programmatic dependent's includes its wait). " +
                    share.name.substr(0, 160),
                {{"count", double(share.count)}, {"sum_us", share.sum_us}, {"alone_us", share.exposed_us}}});
  }
}

}  // namespace troupe::bench
