// Tokenizer encode throughput, single thread: the test corpus repeated to ~8 MB, encoded entry by
// entry (as requests arrive). Prints a table and writes bench/results/tokenizer_<date>.json.
// Usage: tokenizer_bench [tokenizers_dir=.cache/tokenizers] [corpus=tests/fixtures/tokenizer/corpus.json]
#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/tokenizer.hpp"

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string run_command(const char* command) {
  std::string out;
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(command, "r"), pclose);
  if (!pipe) return out;
  std::array<char, 256> buffer{};
  while (fgets(buffer.data(), buffer.size(), pipe.get()) != nullptr) out += buffer.data();
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

}  // namespace

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".cache/tokenizers";
  const std::string corpus_path = argc > 2 ? argv[2] : "tests/fixtures/tokenizer/corpus.json";
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
  const std::time_t now = std::time(nullptr);
  char date[32], day[16];
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  std::strftime(day, sizeof(day), "%Y-%m-%d", std::gmtime(&now));
  const std::string commit = run_command("git rev-parse --short HEAD 2>/dev/null");
  const std::string device = cpu_model();

  nlohmann::json results = nlohmann::json::array();
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
    results.push_back({{"metric", std::string("tokenizer_encode_") + name}, {"value", mb / warm_s}, {"unit", "MB/s"},
                       {"first_pass_value", mb / cold_s}, {"threads", 1}, {"bytes", num_bytes},
                       {"device", device}, {"date", date}, {"commit", commit}, {"command", command}});
  }
  std::filesystem::create_directories("bench/results");
  const std::string out_path = std::string("bench/results/tokenizer_") + day + ".json";
  std::ofstream(out_path) << results.dump(2) << "\n";
  std::printf("wrote %s\n", out_path.c_str());
  return 0;
}
