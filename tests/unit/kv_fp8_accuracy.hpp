#pragma once
// The accuracy cost of --kv-cache-dtype fp8 on the dense fixtures (tests/fixtures/models: Llama,
// Qwen2, Qwen3; tests/fixtures/production: head_dim 64/128/256, prompts up to 1,100 tokens): the
// same weights on two CPU backends, one with the fp32 cache (auto), one with the fp8 cache (scales 1:
// the fixtures have none). Shared by kv_cache_fp8_fixture_test.cpp (which asserts the bounds) and
// bench/kv_fp8_accuracy_bench.cpp (which records the figures under bench/results/).
//
// Per prompt: the auto run's greedy continuation G; both runs teacher-forced over prompt + G
// (logits at every prompt position and at each step of G); the fp8 run's own free greedy.
// The bounds, stated from e4m3's rounding before any run: every cached K/V element is within 2^-4
// of its value (relative; saturation aside), and attention mixes those elements with weights
// summing to 1, so no logit should move by more than that fraction of the logits' range:
//   (1) max |logit_fp8 - logit_auto| <= 2^-4 * max |logit_auto|, per fixture;
//   (2) hence every row whose auto top-1 margin exceeds twice that bound keeps its argmax, and the
//       fp8 greedy continuation equals the auto one at least up to the first step without such a
//       margin.
// Measured (CPU, 2026-12-03): (1) does NOT hold on 6 of the 8 fixtures (up to 2.4 times the bound,
// llama-hd128-gqa4: 0.882 against 0.369): the per-layer errors add up through the residual stream,
// and a small relative error of the final hidden state moves single logits by more than that
// fraction of the largest one. So (1) is a recorded figure (bench/kv_fp8_accuracy_bench), not an
// assertion; (2), which is what a user sees, held on all 8 and stays asserted.
#include <algorithm>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backends/cpu_backend.hpp"
#include "engine/model_runner.hpp"
#include "models/model_loader.hpp"
#include "tests/unit/fixture_oracle.hpp"
#include "tests/unit/production_fixture.hpp"

namespace troupe::kv_fp8 {

constexpr double kE4m3Relative = 1.0 / 16.0;

struct Accuracy {
  std::string name;
  int64_t rows = 0;            // logits rows compared (prompt positions + greedy steps)
  double max_abs_diff = 0;     // max |logit_fp8 - logit_auto|
  double max_abs_logit = 0;    // max |logit_auto|
  int64_t top1_agree = 0;      // rows with the same argmax
  int64_t clear_rows = 0;      // rows whose auto top-1 margin > 2 * bound()
  int64_t clear_agree = 0;
  int64_t greedy_tokens = 0;   // free greedy tokens compared, position by position
  int64_t greedy_agree = 0;
  int64_t greedy_shortfall = 0;  // prompts whose fp8 greedy left the auto one before its first unclear step

  double bound() const { return kE4m3Relative * max_abs_logit; }
};

// One prompt of both runs: their logits rows (prompt positions, then greedy steps) and their greedy
// continuations (auto, fp8).
inline Status add_prompt(Model& auto_model, Backend& auto_backend, Model& fp8_model, Backend& fp8_backend,
                         const std::vector<int32_t>& prompt, int64_t max_new_tokens,
                         std::vector<std::vector<float>>& auto_rows, std::vector<std::vector<float>>& fp8_rows,
                         std::vector<std::vector<int32_t>>& greedy_pairs) {
  auto greedy = greedy_generate(auto_model, auto_backend, prompt, max_new_tokens);
  if (!greedy.ok()) return greedy.error();
  auto want = production::forced_decode(auto_model, auto_backend, prompt, greedy->tokens);
  if (!want.ok()) return want.error();
  auto got = production::forced_decode(fp8_model, fp8_backend, prompt, greedy->tokens);
  if (!got.ok()) return got.error();
  auto fp8_greedy = greedy_generate(fp8_model, fp8_backend, prompt, max_new_tokens);
  if (!fp8_greedy.ok()) return fp8_greedy.error();
  for (auto* rows : {&want->prompt_logits, &want->decode_logits})
    auto_rows.insert(auto_rows.end(), rows->begin(), rows->end());
  for (auto* rows : {&got->prompt_logits, &got->decode_logits}) fp8_rows.insert(fp8_rows.end(), rows->begin(), rows->end());
  greedy_pairs.push_back(greedy->tokens);
  greedy_pairs.push_back(fp8_greedy->tokens);
  return Status::success();
}

// The figures of one fixture from its rows (a row of the prompt's last position predicts greedy
// step 0; decode row s predicts step s + 1).
inline void summarize(const std::vector<std::vector<float>>& auto_rows, const std::vector<std::vector<float>>& fp8_rows,
                      const std::vector<std::vector<int32_t>>& greedy_pairs,
                      const std::vector<std::vector<std::vector<float>>>& step_rows, Accuracy& acc) {
  for (const auto& row : auto_rows)
    for (float v : row) acc.max_abs_logit = std::max(acc.max_abs_logit, double(std::fabs(v)));
  acc.rows = int64_t(auto_rows.size());
  for (size_t r = 0; r < auto_rows.size(); ++r) {
    acc.max_abs_diff = std::max(acc.max_abs_diff, production::max_abs_diff(fp8_rows[r], auto_rows[r]));
    const bool same = production::argmax(fp8_rows[r]) == production::argmax(auto_rows[r]);
    acc.top1_agree += same;
    if (production::top_margin(auto_rows[r]) > 2.0 * acc.bound()) {
      ++acc.clear_rows;
      acc.clear_agree += same;
    }
  }
  for (size_t p = 0; p + 1 < greedy_pairs.size(); p += 2) {
    const auto& a = greedy_pairs[p];
    const auto& b = greedy_pairs[p + 1];
    size_t first_diff = a.size();
    for (size_t i = 0; i < a.size(); ++i) {
      acc.greedy_tokens += 1;
      acc.greedy_agree += i < b.size() && a[i] == b[i];
      if (first_diff == a.size() && (i >= b.size() || a[i] != b[i])) first_diff = i;
    }
    const auto& steps = step_rows[p / 2];  // the auto logits that chose each greedy step
    size_t clear_prefix = 0;
    while (clear_prefix < steps.size() && production::top_margin(steps[clear_prefix]) > 2.0 * acc.bound())
      ++clear_prefix;
    acc.greedy_shortfall += first_diff < std::min(clear_prefix, a.size());
  }
}

// The backend a run computes on: fp8 false for the auto cache, true for the fp8 one.
using BackendMaker = std::function<std::unique_ptr<Backend>(bool fp8)>;

inline std::unique_ptr<Backend> cpu_backend(bool fp8) {
  auto backend = std::make_unique<CpuBackend>(2);
  if (fp8 && !backend->set_fp8_kv_cache(true).ok()) return nullptr;
  return backend;
}

// Both runs over every prompt of one fixture.
template <typename LoadFn>
inline Result<Accuracy> measure(const std::string& name, LoadFn load,
                                const std::vector<std::pair<std::vector<int32_t>, int64_t>>& prompts,
                                const BackendMaker& make_backend) {
  std::unique_ptr<Backend> auto_owner = make_backend(false), fp8_owner = make_backend(true);
  if (!auto_owner || !fp8_owner) return make_error(ErrorCode::unavailable, "no backend for the fp8 comparison");
  Backend& auto_backend = *auto_owner;
  Backend& fp8_backend = *fp8_owner;
  if (fp8_backend.kv_cache_dtype() != DType::f8_e4m3)
    return make_error(ErrorCode::internal, fp8_backend.name() + ": set_fp8_kv_cache did not make the cache fp8");
  auto auto_model = load(auto_backend);
  if (!auto_model.ok()) return auto_model.error();
  auto fp8_model = load(fp8_backend);
  if (!fp8_model.ok()) return fp8_model.error();
  Accuracy acc;
  acc.name = name;
  std::vector<std::vector<float>> auto_rows, fp8_rows;
  std::vector<std::vector<int32_t>> greedy_pairs;
  std::vector<std::vector<std::vector<float>>> step_rows;
  for (const auto& [prompt, max_new] : prompts) {
    const size_t first_row = auto_rows.size();
    TROUPE_TRY(add_prompt(*auto_model.value(), auto_backend, *fp8_model.value(), fp8_backend, prompt, max_new,
                          auto_rows, fp8_rows, greedy_pairs));
    // The rows that chose greedy steps 0..: the prompt's last position, then every decode row.
    step_rows.emplace_back(auto_rows.begin() + std::ptrdiff_t(first_row + prompt.size() - 1), auto_rows.end());
  }
  summarize(auto_rows, fp8_rows, greedy_pairs, step_rows, acc);
  return acc;
}

// Every dense fixture with its prompts: the oracle's (32 new tokens) and the production ones'.
inline std::vector<Result<Accuracy>> measure_all(const std::string& source_dir,
                                                 const BackendMaker& make_backend = cpu_backend) {
  std::vector<Result<Accuracy>> out;
  for (const auto& dir : fixture_dirs(FixtureSet::dense)) {
    const Oracle oracle = read_oracle(dir);
    std::vector<std::pair<std::vector<int32_t>, int64_t>> prompts;
    for (const auto& p : oracle.prompts) prompts.emplace_back(p, oracle.max_new_tokens);
    out.push_back(measure(fs::path(dir).filename().string(),
                          [&](Backend& b) { return load_model(dir, b); }, prompts, make_backend));
  }
  for (const auto& dir : production::fixture_dirs(source_dir)) {
    auto f = std::make_shared<production::Fixture>();
    std::string why;
    if (!production::read_fixture(dir, *f, why)) {
      out.push_back(make_error(ErrorCode::corrupt_data, dir + ": " + why));
      continue;
    }
    std::vector<std::pair<std::vector<int32_t>, int64_t>> prompts;
    for (const auto& p : f->prompts) prompts.emplace_back(p.ids, int64_t(p.greedy.size()));
    out.push_back(measure(fs::path(dir).filename().string(),
                          [&](Backend& b) { return production::load(*f, b, nullptr); }, prompts, make_backend));
  }
  return out;
}

}  // namespace troupe::kv_fp8
