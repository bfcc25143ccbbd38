// bench/step_trace: the arithmetic gpu_decode_bench --kernel-trace applies to CUPTI's kernel spans
// (which step is the last, the span, the time some kernel ran, each name's summed, lone and marginal time).
#include "bench/step_trace.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace troupe::bench {
namespace {

KernelSpan span(const char* name, uint64_t start_us, uint64_t end_us) { return {name, start_us * 1000, end_us * 1000}; }

TEST(StepTrace, LastStepStartsAfterTheLastGap) {
  const std::vector<KernelSpan> spans = {span("a", 0, 10), span("b", 12, 40), span("c", 20, 30),  // step 1
                                         span("a", 140, 150), span("b", 145, 170)};                // step 2
  const std::vector<KernelSpan> last = last_step(spans, 20000);
  ASSERT_EQ(last.size(), 2u);
  EXPECT_EQ(last[0].start_ns, 140000u);
  // A gap measured from the latest end so far, not the previous span's: c ends before b does.
  EXPECT_EQ(last_step({span("a", 0, 100), span("b", 10, 20), span("c", 110, 120)}, 20000).size(), 3u);
  EXPECT_TRUE(last_step({}, 20000).empty());
}

TEST(StepTrace, SumsOverlapsAndLoneTime) {
  // a [0, 10] and b [5, 20] overlap by 5; a again [30, 40]; nothing in (20, 30).
  const StepTrace t = summarize({span("a", 0, 10), span("b", 5, 20), span("a", 30, 40)});
  EXPECT_DOUBLE_EQ(t.span_us, 40.0);
  EXPECT_DOUBLE_EQ(t.busy_us, 30.0);
  ASSERT_EQ(t.by_name.size(), 2u);
  EXPECT_EQ(t.by_name[0].name, "a");  // the longest sum first
  EXPECT_EQ(t.by_name[0].count, 2);
  EXPECT_DOUBLE_EQ(t.by_name[0].sum_us, 20.0);
  EXPECT_DOUBLE_EQ(t.by_name[0].exposed_us, 15.0);  // [0, 5] and [30, 40]
  EXPECT_EQ(t.by_name[1].name, "b");
  EXPECT_DOUBLE_EQ(t.by_name[1].sum_us, 15.0);
  EXPECT_DOUBLE_EQ(t.by_name[1].exposed_us, 10.0);  // [10, 20]
  // Marginals: a [0, 10] moves the end to 10, b to 20, a again to 40 (the idle (20, 30) with it).
  EXPECT_DOUBLE_EQ(t.by_name[0].marginal_us, 30.0);
  EXPECT_DOUBLE_EQ(t.by_name[1].marginal_us, 10.0);
}

TEST(StepTrace, MarginalsOfKernelsThatStartEarlyAndWait) {
  // Programmatic dependents: each starts long before its predecessor ends and waits, so durations
  // overlap and no kernel runs alone; the marginals still add up to the span and rank the kernels
  // by how far each moved the step's end: gemv [0, 30], norm [2, 33], gemv [3, 60], tiny [40, 41].
  const StepTrace t =
      summarize({span("gemv", 0, 30), span("norm", 2, 33), span("gemv", 3, 60), span("tiny", 40, 41)});
  EXPECT_DOUBLE_EQ(t.span_us, 60.0);
  ASSERT_EQ(t.by_name.size(), 3u);
  EXPECT_EQ(t.by_name[0].name, "gemv");
  EXPECT_DOUBLE_EQ(t.by_name[0].marginal_us, 57.0);  // 30, then 60 - 33
  EXPECT_DOUBLE_EQ(t.by_name[0].sum_us, 87.0);
  EXPECT_EQ(t.by_name[1].name, "norm");
  EXPECT_DOUBLE_EQ(t.by_name[1].marginal_us, 3.0);
  EXPECT_EQ(t.by_name[2].name, "tiny");
  EXPECT_DOUBLE_EQ(t.by_name[2].marginal_us, 0.0);  // inside the second gemv
  double total = 0;
  for (const auto& share : t.by_name) total += share.marginal_us;
  EXPECT_DOUBLE_EQ(total, t.span_us);
}

TEST(StepTrace, EmptyAndZeroLengthSpans) {
  const StepTrace none = summarize({});
  EXPECT_EQ(none.span_us, 0.0);
  EXPECT_TRUE(none.by_name.empty());
  const StepTrace t = summarize({span("a", 5, 5), span("b", 0, 10), span("c", 10, 10)});
  EXPECT_DOUBLE_EQ(t.span_us, 10.0);
  EXPECT_DOUBLE_EQ(t.busy_us, 10.0);
  ASSERT_EQ(t.by_name.size(), 3u);
  EXPECT_EQ(t.by_name[0].name, "b");
  EXPECT_DOUBLE_EQ(t.by_name[0].exposed_us, 10.0);
}

TEST(StepTrace, WritesTheSpansAsCsv) {
  const std::string path = (std::filesystem::temp_directory_path() / "troupe_step_trace_test.csv").string();
  ASSERT_TRUE(write_spans_csv({span("void k<1, 2>(int, float)", 100, 104), span("b", 103, 110)}, path));
  std::ifstream in(path);
  std::string header, first, second;
  std::getline(in, header);
  std::getline(in, first);
  std::getline(in, second);
  EXPECT_EQ(header, "name,start_us,duration_us");
  EXPECT_EQ(first, "void k<1; 2>(int; float),0,4");  // commas in names would split the columns
  EXPECT_EQ(second, "b,3,7");
  std::filesystem::remove(path);
  EXPECT_FALSE(write_spans_csv({}, "/nonexistent-dir/x.csv"));
}

TEST(StepTrace, ShortKernelNames) {
  EXPECT_EQ(short_kernel_name("void troupe::kernels::(anonymous namespace)::fp8_gemv_f16_kernel<unsigned short, float, "
                              "4>(const T1 *, const unsigned char *)"),
            "fp8_gemv_f16_kernel");
  EXPECT_EQ(short_kernel_name("troupe::kernels::(anonymous namespace)::decode_reduce_kernel(const int *, int)"),
            "decode_reduce_kernel");
  EXPECT_EQ(short_kernel_name("nvjet_sm90_qqtst_128x128_128x6_4x1_v_bz_coopA_algo2_Ablk128_Bvec128_TNN"),
            "nvjet_sm90_qqtst_128x128_128x6_4x1_v_bz_coopA_algo2_Ablk128_Bvec128_TNN");
  EXPECT_EQ(short_kernel_name("void cublasLt::splitKreduce_kernel<32, 16>(float)"), "splitKreduce_kernel");
  EXPECT_EQ(short_kernel_name("_ZN6troupe12_GLOBAL__N_16gemv_kEPf"), "gemv_k");  // mangled: demangled first
  EXPECT_EQ(short_kernel_name("_Znot_a_name"), "_Znot_a_name");
  EXPECT_EQ(short_kernel_name("<lambda>"), "kernel");
}

TEST(StepTrace, BatchTracePathsBesideTheGivenOne) {
  EXPECT_EQ(traced_csv_path("out/trace.csv", 1), "out/trace.csv");
  EXPECT_EQ(traced_csv_path("out/trace.csv", 64), "out/trace_b64.csv");
  EXPECT_EQ(traced_csv_path("trace.csv.xz", 8), "trace_b8.csv.xz");
  EXPECT_EQ(traced_csv_path("out.d/trace", 64), "out.d/trace_b64");  // a folder's dot is not the file's
  EXPECT_EQ(traced_csv_path(".trace", 2), ".trace_b2");
  EXPECT_EQ(suffixed_path("out/trace.csv", "_prefill4096"), "out/trace_prefill4096.csv");
}

}  // namespace
}  // namespace troupe::bench
