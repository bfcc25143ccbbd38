#include "runtime/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

namespace troupe {
namespace {

constexpr int64_t kFirstPrefix = 512;  // top-p: sorted prefix tried before sorting more

Error bad_row(const std::string& why) { return make_error(ErrorCode::invalid_argument, "sampler: " + why); }

Status check_ids(const std::vector<int32_t>* ids, const char* what, int64_t vocab_size) {
  if (ids == nullptr) return Status::success();
  for (int32_t id : *ids)
    if (id < 0 || id >= vocab_size)
      return bad_row(std::string(what) + " token id " + std::to_string(id) + " out of range [0, " +
                     std::to_string(vocab_size) + ")");
  return Status::success();
}

// log(sum(exp(x))) in double, stable.
float log_sum_exp(const std::vector<float>& x, float max_value) {
  double sum = 0.0;
  for (float v : x) sum += std::exp(static_cast<double>(v) - max_value);
  return static_cast<float>(max_value + std::log(sum));
}

}  // namespace

SequenceRng::SequenceRng(int64_t seed) {
  if (seed == -1) {
    std::random_device device;
    engine.seed((static_cast<uint64_t>(device()) << 32) ^ device());
  } else {
    engine.seed(static_cast<uint64_t>(seed));
  }
}

double SequenceRng::next_uniform() { return static_cast<double>(engine() >> 11) * 0x1.0p-53; }

bool is_stop_token(int32_t token_id, const SamplingParams& params, const std::vector<int32_t>& eos_token_ids) {
  for (int64_t id : params.stop_token_ids)
    if (id == token_id) return true;
  if (params.ignore_eos) return false;
  return std::find(eos_token_ids.begin(), eos_token_ids.end(), token_id) != eos_token_ids.end();
}

Status Sampler::apply_penalties(const SamplerRow& row, int64_t vocab_size) {
  const SamplingParams& p = *row.params;
  TROUPE_TRY(check_ids(row.prompt_ids, "prompt", vocab_size));
  TROUPE_TRY(check_ids(row.output_ids, "output", vocab_size));
  if (static_cast<int64_t>(seen_.size()) < vocab_size) {
    seen_.assign(vocab_size, 0);
    counts_.assign(vocab_size, 0);
  }
  // Repetition penalty (HF / vLLM): each token seen in prompt or output once.
  if (p.repetition_penalty != 1.0) {
    const float penalty = static_cast<float>(p.repetition_penalty);
    for (const auto* ids : {row.prompt_ids, row.output_ids}) {
      if (ids == nullptr) continue;
      for (int32_t id : *ids) {
        if (seen_[id]) continue;
        seen_[id] = 1;
        float& x = work_[id];
        x = x > 0.0f ? x / penalty : x * penalty;
      }
    }
    for (const auto* ids : {row.prompt_ids, row.output_ids})
      if (ids != nullptr)
        for (int32_t id : *ids) seen_[id] = 0;
  }
  // Presence and frequency penalties (OpenAI): output tokens only.
  if ((p.presence_penalty != 0.0 || p.frequency_penalty != 0.0) && row.output_ids != nullptr) {
    for (int32_t id : *row.output_ids) ++counts_[id];
    for (int32_t id : *row.output_ids) {
      if (counts_[id] == 0) continue;  // already applied
      work_[id] -= static_cast<float>(p.frequency_penalty * counts_[id] + p.presence_penalty);
      counts_[id] = 0;
    }
  }
  return Status::success();
}

// Picks a token from work_ (already divided by the temperature) with top-k, top-p and min-p.
int32_t Sampler::pick(const SamplingParams& params, double uniform) {
  const int64_t vocab_size = static_cast<int64_t>(work_.size());
  const float* x = work_.data();
  const float max_value = *std::max_element(work_.begin(), work_.end());
  const double log_min_p = params.min_p > 0.0 ? std::log(params.min_p) : -std::numeric_limits<double>::infinity();
  const bool top_k_on = params.top_k >= 1 && params.top_k < vocab_size;

  // Fast path: no sorting. Candidates are every id with x >= max + log(min_p), in id order.
  if (!top_k_on && params.top_p >= 1.0) {
    const double threshold = max_value + log_min_p;
    double total = 0.0;
    for (int64_t i = 0; i < vocab_size; ++i)
      if (x[i] >= threshold) total += std::exp(static_cast<double>(x[i]) - max_value);
    const double target = uniform * total;
    double acc = 0.0;
    int32_t last = -1;
    for (int64_t i = 0; i < vocab_size; ++i) {
      if (!(x[i] >= threshold)) continue;
      acc += std::exp(static_cast<double>(x[i]) - max_value);
      last = static_cast<int32_t>(i);
      if (acc > target) return last;
    }
    return last;
  }

  auto better = [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
  order_.resize(vocab_size);
  // Normalizer of the distribution top-p sees: over the top-k when it is on, else over all ids.
  int64_t num_sorted = top_k_on ? params.top_k : std::min(vocab_size, kFirstPrefix);
  std::iota(order_.begin(), order_.end(), 0);
  std::partial_sort(order_.begin(), order_.begin() + num_sorted, order_.end(), better);
  double norm = 0.0;
  if (top_k_on) {
    for (int64_t i = 0; i < num_sorted; ++i) norm += std::exp(static_cast<double>(x[order_[i]]) - max_value);
  } else {
    for (int64_t i = 0; i < vocab_size; ++i) norm += std::exp(static_cast<double>(x[i]) - max_value);
  }
  int64_t num_keep = num_sorted;
  if (params.top_p < 1.0) {
    // Keep the smallest best-first prefix whose mass reaches top_p (at least one token).
    while (true) {
      double cum = 0.0;
      int64_t i = 0;
      for (; i < num_sorted && cum < params.top_p * norm; ++i)
        cum += std::exp(static_cast<double>(x[order_[i]]) - max_value);
      if (cum >= params.top_p * norm || num_sorted == vocab_size || top_k_on) {
        num_keep = std::max<int64_t>(i, 1);
        break;
      }
      const int64_t grown = std::min(vocab_size, num_sorted * 8);
      std::partial_sort(order_.begin() + num_sorted, order_.begin() + grown, order_.end(), better);
      num_sorted = grown;
    }
  }
  // min-p relative to the best kept token (order_[0] holds the maximum).
  const double threshold = max_value + log_min_p;
  double total = 0.0;
  int64_t num_candidates = 0;
  for (; num_candidates < num_keep && x[order_[num_candidates]] >= threshold; ++num_candidates)
    total += std::exp(static_cast<double>(x[order_[num_candidates]]) - max_value);
  num_candidates = std::max<int64_t>(num_candidates, 1);
  const double target = uniform * total;
  double acc = 0.0;
  for (int64_t i = 0; i < num_candidates; ++i) {
    acc += std::exp(static_cast<double>(x[order_[i]]) - max_value);
    if (acc > target) return order_[i];
  }
  return order_[num_candidates - 1];
}

void Sampler::fill_top_logprobs(int64_t n, float log_norm, SampledToken& out) {
  const int64_t vocab_size = static_cast<int64_t>(work_.size());
  n = std::min(n, vocab_size);
  if (n <= 0) return;
  const float* x = work_.data();
  order_.resize(vocab_size);
  std::iota(order_.begin(), order_.end(), 0);
  std::partial_sort(order_.begin(), order_.begin() + n, order_.end(),
                    [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); });
  out.top_logprobs.reserve(n);
  for (int64_t i = 0; i < n; ++i) out.top_logprobs.emplace_back(order_[i], x[order_[i]] - log_norm);
}

Result<SampledToken> Sampler::sample_row(const float* logits, int64_t vocab_size, const SamplerRow& row) {
  if (logits == nullptr || vocab_size < 1) return bad_row("logits row is empty");
  if (row.params == nullptr) return bad_row("row has no SamplingParams");
  const SamplingParams& params = *row.params;
  if (!params.is_greedy() && row.rng == nullptr) return bad_row("sampling row has no RNG state");
  work_.assign(logits, logits + vocab_size);
  for (float v : work_)
    if (std::isnan(v)) return bad_row("logits contain NaN");
  TROUPE_TRY(apply_penalties(row, vocab_size));
  float max_value = *std::max_element(work_.begin(), work_.end());
  if (!std::isfinite(max_value)) return bad_row("logits have no finite maximum");

  SampledToken out;
  if (params.is_greedy()) {
    out.token_id = static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) - work_.begin());
  } else {
    const float inv_t = static_cast<float>(1.0 / params.temperature);
    for (float& v : work_) v *= inv_t;
    max_value = *std::max_element(work_.begin(), work_.end());
    if (!std::isfinite(max_value)) return bad_row("logits overflow at temperature " + std::to_string(params.temperature));
    out.token_id = pick(params, row.rng->next_uniform());
  }
  const float log_norm = log_sum_exp(work_, max_value);
  out.logprob = work_[out.token_id] - log_norm;
  if (params.logprobs > 0) fill_top_logprobs(params.logprobs, log_norm, out);
  return out;
}

Result<std::vector<SampledToken>> Sampler::sample(const float* logits, int64_t num_seqs, int64_t vocab_size,
                                                  const std::vector<SamplerRow>& rows) {
  if (num_seqs < 0 || static_cast<int64_t>(rows.size()) != num_seqs)
    return bad_row("got " + std::to_string(rows.size()) + " rows for " + std::to_string(num_seqs) + " logit rows");
  std::vector<SampledToken> out;
  out.reserve(num_seqs);
  for (int64_t i = 0; i < num_seqs; ++i) {
    auto token = sample_row(logits + i * vocab_size, vocab_size, rows[i]);
    if (!token.ok()) return make_error(token.error().code, token.error().message + " (row " + std::to_string(i) + ")");
    out.push_back(std::move(token.value()));
  }
  return out;
}

}  // namespace troupe
