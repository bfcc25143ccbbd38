// Tokenizer encode throughput, single thread: the test corpus repeated to ~8 MB, encoded entry by
// entry (as requests arrive). Prints a table and writes bench/results/tokenizer_<date>.json.
// Usage: tokenizer_bench [tokenizers_dir=.cache/tokenizers] [corpus=tests/fixtures/tokenizer/corpus.json]
//                        [out=bench/results/tokenizer_<date>.json]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/bench_record.hpp"
#include "text/tokenizer.hpp"

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".cache/tokenizers";
  const std::string corpus_path = argc > 2 ? argv[2] : "tests/fixtures/tokenizer/corpus.json";
  const std::string out_path = argc > 3 ? argv[3] : "";
  const auto corpus = nlohmann::json::parse(read_file(corpus_path), nullptr, false);
  if (!corpus.is_array()) {
    std::fprintf(stderr, "cannot read corpus %s\n", corpus_path.c_str());
    return 1;
  }
  std::vector<std::string> texts;
  size_t num_bytes = 0;
  while (num_bytes < 8u << 20) {
    for (const auto& text : corpus) {
      texts.push_back(text.get<std::string>());
      num_bytes += texts.back().size();
    }
  }
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);

  std::vector<troupe::BenchRecord> records;
  std::printf("%-12s %12s %12s %12s\n", "tokenizer", "cold MB/s", "warm MB/s", "tokens/s");
  for (const char* name : {"deepseek_v3", "qwen3", "llama3_1"}) {
    auto tokenizer = troupe::Tokenizer::load(dir + "/" + name);
    if (!tokenizer.ok()) {
      std::fprintf(stderr, "%s: %s (run tools/fetch-tokenizers)\n", name, tokenizer.error().message.c_str());
      return 1;
    }
    const auto time_pass = [&](size_t* num_tokens) {
      const auto start = std::chrono::steady_clock::now();
      size_t tokens = 0;
      for (const auto& text : texts) tokens += tokenizer->encode(text).size();
      *num_tokens = tokens;
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    size_t num_tokens = 0;
    const double cold_s = time_pass(&num_tokens);  // first pass fills the piece cache
    double warm_s = 1e30;
    for (int pass = 0; pass < 3; ++pass) warm_s = std::min(warm_s, time_pass(&num_tokens));
    const double mb = static_cast<double>(num_bytes) / 1e6;
    std::printf("%-12s %12.1f %12.1f %12.3g\n", name, mb / cold_s, mb / warm_s, static_cast<double>(num_tokens) / warm_s);
    troupe::BenchRecord record;
    record.metric = std::string("tokenizer_encode_") + name;
    record.value = mb / warm_s;
    record.unit = "MB/s";
    record.note = "best of 3 warm passes; first_pass_value is the cold pass";
    record.extra = {{"first_pass_value", mb / cold_s}, {"threads", 1}, {"bytes", static_cast<double>(num_bytes)}};
    records.push_back(record);
  }
  auto written = troupe::write_bench_records(records, "tokenizer", out_path, command);
  if (!written.ok()) {
    std::fprintf(stderr, "%s\n", written.error().message.c_str());
    return 1;
  }
  std::printf("wrote %s\n", written.value().c_str());
  return 0;
}
