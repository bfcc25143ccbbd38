// Greedy generation throughput of the CPU backend at batch 1 and 16 (prefill 32 tokens per
// sequence, then decode steps), on a model folder (default: the llama-tiny fixture; the DeepSeek-V3
// fixtures too). It also prints the KV-cache bytes per token of DeepSeek-R1's real config
// (bench/models/deepseek-r1: 61 layers x 576 cached values with MLA) next to what plain multi-head
// attention would cache (61 layers x 128 heads x (192 + 128) values), both in bf16.
// usage: cpu_generate_bench [MODEL_DIR] [--threads N] [--decode-steps N] [--out PATH]
// Run from the repository root. Prints a table and writes bench/results/cpu_generate_<date>.json
// (or PATH).
#include <chrono>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "runtime/bench_record.hpp"
#include "backends/cpu_backend.hpp"
#include "models/model_loader.hpp"
#include "runtime/model_config.hpp"

namespace {

using troupe::ForwardBatch;

struct Run {
  double prefill_tokens_per_s = 0;
  double decode_tokens_per_s = 0;
};

// `batch` sequences: prefill `prompt_len` tokens each (one step), then `decode_steps` decode steps.
troupe::Result<Run> run(troupe::Model& model, troupe::Backend& backend, int64_t batch, int64_t prompt_len,
                        int64_t decode_steps) {
  const int64_t block_size = 16, blocks_per_seq = (prompt_len + decode_steps + block_size - 1) / block_size;
  auto cache = backend.create_kv_cache(model.kv_cache_spec(batch * blocks_per_seq, block_size));
  if (!cache.ok()) return cache.error();
  std::vector<std::vector<int32_t>> tables(static_cast<size_t>(batch));
  for (int64_t s = 0; s < batch; ++s) {
    for (int64_t b = 0; b < blocks_per_seq; ++b) tables[size_t(s)].push_back(int32_t(b * batch + s));  // interleaved
  }
  const int64_t vocab = model.config().vocab_size;
  ForwardBatch step;
  for (int64_t s = 0; s < batch; ++s) {
    for (int64_t p = 0; p < prompt_len; ++p) {
      step.token_ids.push_back(int32_t((s * 31 + p * 7) % vocab));
      step.positions.push_back(int32_t(p));
    }
    step.seqs.push_back({int32_t(prompt_len), int32_t(prompt_len), &tables[size_t(s)], true});
  }
  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  auto logits = model.forward(step, cache.value(), troupe::LogitsMode::last_token);
  if (!logits.ok()) return logits.error();
  Run result;
  result.prefill_tokens_per_s = double(batch * prompt_len) / std::chrono::duration<double>(clock::now() - start).count();
  start = clock::now();
  for (int64_t i = 0; i < decode_steps; ++i) {
    const auto next = backend.argmax(logits.value());
    step.token_ids.assign(next.begin(), next.end());
    step.positions.assign(size_t(batch), int32_t(prompt_len + i));
    for (auto& seq : step.seqs) {
      seq.num_new_tokens = 1;
      seq.context_len = int32_t(prompt_len + i + 1);
    }
    logits = model.forward(step, cache.value(), troupe::LogitsMode::last_token);
    if (!logits.ok()) return logits.error();
  }
  result.decode_tokens_per_s = double(batch * decode_steps) / std::chrono::duration<double>(clock::now() - start).count();
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model_dir = "tests/fixtures/models/llama-tiny";
  std::string out_path;
  int64_t num_threads = 0, decode_steps = 128;
  const int64_t prompt_len = 32;
  std::string command = argv[0];
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    command += " " + arg;
    if (arg == "--threads" && i + 1 < argc) {
      num_threads = std::stoll(argv[++i]);
      command += std::string(" ") + argv[i];
    } else if (arg == "--decode-steps" && i + 1 < argc) {
      decode_steps = std::stoll(argv[++i]);
      command += std::string(" ") + argv[i];
    } else if (arg == "--out" && i + 1 < argc) {
      out_path = argv[++i];
      command += std::string(" ") + argv[i];
    } else {
      model_dir = arg;
    }
  }
  troupe::CpuBackend backend(num_threads);
  auto model = troupe::load_model(model_dir, backend);
  if (!model.ok()) {
    std::fprintf(stderr, "cpu_generate_bench: %s\n", model.error().message.c_str());
    return 1;
  }
  const std::string device = troupe::host_device_name() + ", " + std::to_string(backend.num_threads()) +
                             " compute threads";

  std::vector<troupe::BenchRecord> records;
  // DeepSeek-R1's KV cache per token: MLA's latent + k_pe against full K and V heads (bf16).
  if (auto r1 = troupe::ModelConfig::load("bench/models/deepseek-r1"); r1.ok() && r1->mla.enabled()) {
    const double layers = double(r1->num_hidden_layers), bf16 = 2.0;
    const double mla = layers * double(r1->mla.cache_entry()) * bf16;
    const double mha = layers * double(r1->num_attention_heads) *
                       double(r1->mla.qk_head_dim() + r1->mla.v_head_dim) * bf16;
    std::printf("DeepSeek-R1 KV cache per token (bf16): MLA %.0f bytes (%lld layers x %lld values), without MLA %.0f "
                "bytes: %.1fx smaller\n",
                mla, static_cast<long long>(r1->num_hidden_layers), static_cast<long long>(r1->mla.cache_entry()), mha,
                mha / mla);
    troupe::BenchRecord record;
    record.metric = "deepseek_r1_kv_bytes_per_token_mla";
    record.value = mla;
    record.unit = "bytes";
    record.limit = mha;
    record.fraction_of_limit = mla / mha;
    record.note = "bf16 KV cache of DeepSeek-R1 (bench/models/deepseek-r1): latent + k_pe per layer; limit = the "
                  "same model caching full K and V heads; fraction = the share MLA keeps";
    records.push_back(record);
  } else {
    std::fprintf(stderr, "cpu_generate_bench: bench/models/deepseek-r1 not readable (run from the repository root)\n");
  }
  std::printf("%-6s %-22s %-22s\n", "batch", "prefill tokens/s", "decode tokens/s");
  for (int64_t batch : {1, 16}) {
    if (!run(*model.value(), backend, batch, prompt_len, 4).ok()) return 1;  // warm-up
    auto r = run(*model.value(), backend, batch, prompt_len, decode_steps);
    if (!r.ok()) {
      std::fprintf(stderr, "cpu_generate_bench: %s\n", r.error().message.c_str());
      return 1;
    }
    std::printf("%-6lld %-22.1f %-22.1f\n", static_cast<long long>(batch), r->prefill_tokens_per_s,
                r->decode_tokens_per_s);
    for (const auto& [name, value] : {std::pair{"decode", r->decode_tokens_per_s}, {"prefill", r->prefill_tokens_per_s}}) {
      troupe::BenchRecord record;
      record.metric = std::string("cpu_") + name + "_tokens_per_s_batch" + std::to_string(batch);
      record.value = value;
      record.unit = "tokens/s";
      record.note = "model " + model_dir;
      record.extra = {{"prompt_len", double(prompt_len)}, {"decode_steps", double(decode_steps)}};
      records.push_back(record);
    }
  }
  auto written = troupe::write_bench_records(records, "cpu_generate", out_path, command, device);
  if (!written.ok()) {
    std::fprintf(stderr, "cpu_generate_bench: %s\n", written.error().message.c_str());
    return 1;
  }
  std::printf("wrote %s\n", written.value().c_str());
  return 0;
}
