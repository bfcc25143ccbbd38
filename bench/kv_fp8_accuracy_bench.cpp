// The accuracy cost of --kv-cache-dtype fp8 on the dense fixtures (tests/unit/kv_fp8_accuracy.hpp:
// the same weights on the CPU backend with the fp32 cache and the fp8 one). Prints a table and
// writes bench/results/kv_fp8_accuracy_<date>.json (or --out PATH). The bounds it records as limits
// are the ones tests/unit/kv_cache_fp8_fixture_test.cpp asserts.
#include <cstdio>
#include <string>
#include <vector>

#include "runtime/bench_record.hpp"
#include "tests/unit/kv_fp8_accuracy.hpp"

int main(int argc, char** argv) {
  using namespace troupe;
  std::string out_path, command = "kv_fp8_accuracy_bench";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    command += " " + a;
    if (a == "--out" && i + 1 < argc) {
      out_path = argv[++i];
      command += std::string(" ") + argv[i];
    } else {
      std::fprintf(stderr, "usage: kv_fp8_accuracy_bench [--out PATH]\n");
      return 2;
    }
  }
  std::vector<BenchRecord> records;
  std::printf("%-18s %6s %12s %12s %10s %12s %10s\n", "fixture", "rows", "max|dlogit|", "bound", "top-1", "clear top-1",
              "greedy");
  int64_t rows = 0, agree = 0, greedy = 0, greedy_agree = 0;
  for (const auto& r : kv_fp8::measure_all(TROUPE_SOURCE_DIR)) {
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.error().message.c_str());
      return 1;
    }
    const kv_fp8::Accuracy& a = r.value();
    const double top1 = double(a.top1_agree) / double(a.rows);
    const double tokens = double(a.greedy_agree) / double(a.greedy_tokens);
    std::printf("%-18s %6lld %12.3e %12.3e %10.4f %5lld/%-6lld %10.4f\n", a.name.c_str(), (long long)a.rows,
                a.max_abs_diff, a.bound(), top1, (long long)a.clear_agree, (long long)a.clear_rows, tokens);
    records.push_back(BenchRecord{"kv_fp8_max_abs_logit_diff_" + a.name, a.max_abs_diff, "logit", a.bound(),
                                  a.max_abs_diff > 0 ? a.bound() / a.max_abs_diff : 1.0,
                                  "fp8 KV cache (scales 1) vs the fp32 cache on the CPU backend, every prompt position "
                                  "and greedy step teacher-forced; limit: 2^-4 * max |logit| (e4m3's rounding), an "
                                  "'at most' goal",
                                  {{"rows", double(a.rows)}, {"max_abs_logit", a.max_abs_logit}}});
    records.push_back(BenchRecord{"kv_fp8_top1_agreement_" + a.name, top1, "fraction", 1.0, top1,
                                  "rows whose argmax equals the fp32 cache's; limit 1 ('at least')",
                                  {{"clear_rows", double(a.clear_rows)},
                                   {"clear_rows_agreeing", double(a.clear_agree)}}});
    records.push_back(BenchRecord{"kv_fp8_greedy_agreement_" + a.name, tokens, "fraction", 1.0, tokens,
                                  "free-running greedy tokens equal to the fp32 cache's, position by position (a "
                                  "divergence counts every later token); limit 1 ('at least')",
                                  {{"tokens", double(a.greedy_tokens)}}});
    rows += a.rows;
    agree += a.top1_agree;
    greedy += a.greedy_tokens;
    greedy_agree += a.greedy_agree;
  }
  const double top1 = double(agree) / double(rows), tokens = double(greedy_agree) / double(greedy);
  std::printf("all: top-1 %.4f over %lld rows, greedy tokens %.4f over %lld\n", top1, (long long)rows, tokens,
              (long long)greedy);
  records.push_back(BenchRecord{"kv_fp8_top1_agreement_all", top1, "fraction", 1.0, top1,
                                "every dense fixture's rows together; limit 1 ('at least')", {{"rows", double(rows)}}});
  records.push_back(BenchRecord{"kv_fp8_greedy_agreement_all", tokens, "fraction", 1.0, tokens,
                                "every dense fixture's greedy tokens together; limit 1 ('at least')",
                                {{"tokens", double(greedy)}}});
  records.push_back(BenchRecord{"kv_fp8_bytes_per_element", 1.0, "bytes", 1.0, 1.0,
                                "an fp8 cache element is 1 byte: half of bf16's (2), a quarter of the CPU's fp32 (4); "
                                "KV sizing fits twice the tokens of a bf16 cache"});
  auto written = write_bench_records(records, "kv_fp8_accuracy", out_path, command, host_device_name());
  if (!written.ok()) {
    std::fprintf(stderr, "%s\n", written.error().message.c_str());
    return 1;
  }
  std::printf("wrote %s\n", written.value().c_str());
  return 0;
}
