#pragma once
// The production-shape fixtures (tools/make_production_fixtures.py): dense models with head_dim 64,
// 128 and 256, GQA 4:1, prompts of 1, 300 and 1,100 tokens, whose weights are troupe's dummy weights
// (recomputed by the script), and transformers' fp32 logits: the last prompt positions and 31 decode
// steps fed transformers' own greedy tokens. Shared by the CPU test (tests/unit) and the GPU test
// (tests/gpu), which read the same oracle through the same teacher-forced loop.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "models/dummy_weights.hpp"
#include "models/model_loader.hpp"
#include "runtime/backend.hpp"
#include "runtime/model.hpp"
#include "runtime/model_config.hpp"
#include "runtime/safetensors_file.hpp"
#include "tests/unit/bf16_rounded_weights.hpp"

namespace troupe::production {

namespace fs = std::filesystem;

struct Prompt {
  std::vector<int32_t> ids;
  std::vector<int32_t> greedy;                   // transformers' 32 greedy tokens
  int64_t logits_from = 0;                       // first prompt position whose logits are kept
  std::vector<std::vector<float>> prompt_logits;  // positions [logits_from, len)
  std::vector<std::vector<float>> decode_logits;  // decode steps 1..31 (after greedy[0..30])
};

struct Fixture {
  std::string dir;
  uint64_t seed = 0;
  float scale = 0;
  std::vector<std::string> weights;  // every parameter transformers holds, sorted
  std::vector<Prompt> prompts;
};

inline std::vector<std::string> fixture_dirs(const std::string& source_dir) {
  std::vector<std::string> dirs;
  const fs::path root = fs::path(source_dir) / "tests/fixtures/production";
  if (!fs::exists(root)) return dirs;
  for (const auto& entry : fs::directory_iterator(root))
    if (fs::exists(entry.path() / "oracle.json")) dirs.push_back(entry.path().string());
  std::sort(dirs.begin(), dirs.end());
  return dirs;
}

inline std::vector<std::vector<float>> rows_of(const SafetensorsFile& file, const std::string& name) {
  std::vector<std::vector<float>> rows;
  const TensorView* view = file.find(name);
  if (!view || view->shape.size() != 2) return rows;
  std::vector<float> values(size_t(view->numel()));
  if (!convert_to_f32(view->dtype, view->data, values.size(), values.data())) return rows;
  const size_t cols = size_t(view->shape[1]);
  for (size_t r = 0; r < size_t(view->shape[0]); ++r)
    rows.emplace_back(values.begin() + long(r * cols), values.begin() + long((r + 1) * cols));
  return rows;
}

// Errors come back as a message in `why` (a fixture that cannot be read fails its test).
inline bool read_fixture(const std::string& dir, Fixture& out, std::string& why) {
  std::ifstream in(dir + "/oracle.json");
  std::stringstream text;
  text << in.rdbuf();
  const auto json = nlohmann::json::parse(text.str(), nullptr, false);
  if (json.is_discarded()) return why = dir + "/oracle.json: not JSON", false;
  auto logits = SafetensorsFile::open(dir + "/oracle_logits.safetensors");
  if (!logits.ok()) return why = logits.error().message, false;
  out.dir = dir;
  out.seed = json.at("dummy").at("seed").get<uint64_t>();
  out.scale = json.at("dummy").at("scale").get<float>();
  out.weights = json.at("weights").get<std::vector<std::string>>();
  const auto prompts = json.at("prompts").get<std::vector<std::vector<int32_t>>>();
  const auto greedy = json.at("greedy").get<std::vector<std::vector<int32_t>>>();
  const auto from = json.at("prompt_logits_from").get<std::vector<int64_t>>();
  for (size_t i = 0; i < prompts.size(); ++i) {
    Prompt p;
    p.ids = prompts[i];
    p.greedy = greedy.at(i);
    p.logits_from = from.at(i);
    p.prompt_logits = rows_of(*logits.value(), "prompt." + std::to_string(i));
    p.decode_logits = rows_of(*logits.value(), "decode." + std::to_string(i));
    if (int64_t(p.prompt_logits.size()) != int64_t(p.ids.size()) - p.logits_from ||
        p.decode_logits.size() + 1 != p.greedy.size())
      return why = dir + ": oracle logits of prompt " + std::to_string(i) + " have the wrong number of rows", false;
    out.prompts.push_back(std::move(p));
  }
  return true;
}

// The fixture's model on `backend` with its dummy weights; the names the loader asked for go to
// `requested` (they must be exactly the parameters transformers holds). rounded_to_bf16: the values
// a bf16 CudaBackend holds (bf16_rounded_weights.hpp), for fp32 references of the bf16 path.
inline Result<std::unique_ptr<Model>> load(const Fixture& f, Backend& backend, std::set<std::string>* requested,
                                           bool rounded_to_bf16 = false) {
  auto config = ModelConfig::load(f.dir);
  if (!config.ok()) return config.error();
  DummyWeightOptions options;
  options.seed = f.seed;
  options.scale = f.scale;
  const WeightLoader dummy = rounded_to_bf16 ? bf16_rounded(dummy_weight_loader(options)) : dummy_weight_loader(options);
  WeightLoader loader = [&](const std::string& name, const std::vector<int64_t>& shape) {
    if (requested) requested->insert(name);
    return dummy(name, shape);
  };
  return load_model(config.value(), loader, backend);
}

struct Run {
  std::vector<std::vector<float>> prompt_logits;  // every prompt position
  std::vector<std::vector<float>> decode_logits;  // one per forced token but the last
};

// Prefills `prompt` (all positions' logits), then decodes `forced[0..n-2]` one token per step,
// whatever the model would pick (teacher forcing), over a private paged cache of `block_size`.
inline Result<Run> forced_decode(Model& model, Backend& backend, const std::vector<int32_t>& prompt,
                                 const std::vector<int32_t>& forced, int64_t block_size = 16) {
  const int64_t total = int64_t(prompt.size() + forced.size());
  const int64_t num_blocks = (total + block_size - 1) / block_size;
  auto cache = backend.create_kv_cache(model.kv_cache_spec(num_blocks, block_size));
  if (!cache.ok()) return cache.error();
  std::vector<int32_t> block_table(static_cast<size_t>(num_blocks), 0);
  for (int64_t i = 0; i < num_blocks; ++i) block_table[size_t(i)] = int32_t(i);
  Run run;
  ForwardBatch batch;
  batch.token_ids = prompt;
  for (size_t i = 0; i < prompt.size(); ++i) batch.positions.push_back(int32_t(i));
  batch.seqs.push_back({int32_t(prompt.size()), int32_t(prompt.size()), &block_table, true});
  int32_t context_len = int32_t(prompt.size());
  for (size_t step = 0; step < forced.size(); ++step) {
    auto logits = model.forward(batch, cache.value(), step == 0 ? LogitsMode::all_tokens : LogitsMode::last_token);
    if (!logits.ok()) return logits.error();
    const Tensor host = backend.to_host(logits.value());
    const int64_t vocab = host.size(1);
    const float* p = host.data<float>();
    for (int64_t t = 0; t < host.size(0); ++t)
      (step == 0 ? run.prompt_logits : run.decode_logits).emplace_back(p + t * vocab, p + (t + 1) * vocab);
    if (step + 1 == forced.size()) break;
    batch.token_ids = {forced[step]};
    batch.positions = {context_len};
    ++context_len;
    batch.seqs[0].num_new_tokens = 1;
    batch.seqs[0].context_len = context_len;
  }
  // The last forward above consumed forced[n-2]; its logits are decode step n-1.
  return run;
}

inline double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = a.size() == b.size() ? 0 : INFINITY;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    worst = std::max(worst, double(std::fabs(a[i] - b[i])) + (std::isfinite(a[i]) ? 0 : INFINITY));
  return worst;
}

// `run` against the oracle: the max |logit diff| over the prompt positions and decode steps it keeps.
inline double max_diff_to_oracle(const Prompt& p, const Run& run) {
  double worst = 0;
  for (size_t t = 0; t < p.prompt_logits.size(); ++t)
    worst = std::max(worst, max_abs_diff(run.prompt_logits.at(size_t(p.logits_from) + t), p.prompt_logits[t]));
  for (size_t s = 0; s < p.decode_logits.size(); ++s)
    worst = std::max(worst, max_abs_diff(run.decode_logits.at(s), p.decode_logits[s]));
  return worst;
}

// Two runs of one prompt: the max |logit diff| over every prompt position and decode step.
inline double max_diff(const Run& a, const Run& b) {
  if (a.prompt_logits.size() != b.prompt_logits.size() || a.decode_logits.size() != b.decode_logits.size())
    return INFINITY;
  double worst = 0;
  for (size_t t = 0; t < a.prompt_logits.size(); ++t) worst = std::max(worst, max_abs_diff(a.prompt_logits[t], b.prompt_logits[t]));
  for (size_t s = 0; s < a.decode_logits.size(); ++s) worst = std::max(worst, max_abs_diff(a.decode_logits[s], b.decode_logits[s]));
  return worst;
}

inline double rms(const std::vector<std::vector<float>>& rows) {
  double sum = 0, n = 0;
  for (const auto& r : rows)
    for (float v : r) sum += double(v) * v, ++n;
  return n > 0 ? std::sqrt(sum / n) : 0;
}

// The gap between the best and the second-best logit of a row.
inline double top_margin(const std::vector<float>& row) {
  float a = -INFINITY, b = -INFINITY;
  for (float v : row) {
    if (v > a) b = a, a = v;
    else if (v > b) b = v;
  }
  return double(a) - double(b);
}

inline int64_t argmax(const std::vector<float>& row) {
  return int64_t(std::max_element(row.begin(), row.end()) - row.begin());
}

struct Agreement {
  int judged = 0, agreed = 0;  // decode steps with a clear reference margin, and those picking its token
};

// Decode steps whose reference top-1 margin exceeds `margin`, and those where `run` picks the
// reference's token. A run within margin / 2 of the reference everywhere must agree on all of them.
inline Agreement agreement(const std::vector<std::vector<float>>& reference_decode, const Run& run, double margin) {
  Agreement a;
  for (size_t s = 0; s < reference_decode.size(); ++s) {
    if (top_margin(reference_decode[s]) <= margin) continue;
    ++a.judged;
    a.agreed += s < run.decode_logits.size() && argmax(run.decode_logits[s]) == argmax(reference_decode[s]);
  }
  return a;
}

}  // namespace troupe::production
