#include "engine/sampler.hpp"

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

Status Sampler::apply_bias_and_min_tokens(const SamplerRow& row, int64_t vocab_size) {
  const SamplingParams& p = *row.params;
  for (const LogitBias& b : p.logit_bias) {
    if (b.token_id < 0 || b.token_id >= vocab_size)
      return bad_row("logit_bias token id " + std::to_string(b.token_id) + " out of range [0, " +
                     std::to_string(vocab_size) + ")");
    work_[b.token_id] += b.bias;
  }
  const int64_t num_output = row.output_ids ? static_cast<int64_t>(row.output_ids->size()) : 0;
  if (num_output < p.min_tokens) {
    // As vLLM's MinTokensLogitsProcessor: every EOS id (even with ignore_eos) and stop_token_ids.
    constexpr float kMasked = -std::numeric_limits<float>::infinity();
    for (int32_t id : eos_token_ids_)
      if (id >= 0 && id < vocab_size) work_[id] = kMasked;
    for (int64_t id : p.stop_token_ids)
      if (id >= 0 && id < vocab_size) work_[id] = kMasked;
  }
  return Status::success();
}

void Sampler::apply_mask(const SamplerRow& row, int64_t vocab_size) {
  const float minus_inf = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < vocab_size; ++i) {
    const int64_t w = i >> 5;
    if (w >= row.num_allowed_words || !((row.allowed[w] >> (i & 31)) & 1)) work_[i] = minus_inf;
  }
}

// order_ = the best k ids of x_ (higher logit, then lower id), sorted best-first.
void Sampler::select_top(int64_t k) {
  const float* x = x_;
  auto better = [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
  k = std::min(k, vocab_size_);
  if (k * 64 > vocab_size_) {  // large k: O(V) selection, then sort k
    order_.resize(vocab_size_);
    std::iota(order_.begin(), order_.end(), 0);
    if (k < vocab_size_) std::nth_element(order_.begin(), order_.begin() + k, order_.end(), better);
    order_.resize(k);
  } else {
    // One pass with a heap of the k best so far; its top is the worst kept. Ids come in
    // increasing order, so a later id must beat the worst kept strictly.
    order_.clear();
    for (int32_t i = 0; i < vocab_size_; ++i) {
      if (static_cast<int64_t>(order_.size()) < k) {
        order_.push_back(i);
        std::push_heap(order_.begin(), order_.end(), better);
      } else if (x[i] > x[order_.front()]) {
        std::pop_heap(order_.begin(), order_.end(), better);
        order_.back() = i;
        std::push_heap(order_.begin(), order_.end(), better);
      }
    }
  }
  std::sort(order_.begin(), order_.end(), better);
}

// Picks a token with top-k, top-p and min-p. x_ holds unscaled logits (the order does not
// depend on the temperature); exp_[i] = exp((x_[i] - max_value) / T), full_sum their sum.
int32_t Sampler::pick(const SamplingParams& params, double uniform, float max_value, double full_sum) {
  const int64_t vocab_size = vocab_size_;
  const float* x = x_;
  const float* e = exp_.data();
  const double log_min_p = params.min_p > 0.0 ? std::log(params.min_p) : -std::numeric_limits<double>::infinity();
  // min-p relative to the best token: p_i >= min_p * p_max  <=>  x_i >= max + T * log(min_p).
  const double threshold = max_value + params.temperature * log_min_p;
  const bool top_k_on = params.top_k >= 1 && params.top_k < vocab_size;

  // Fast path, no sorting: candidates are the ids with x >= threshold, walked in id order.
  if (!top_k_on && params.top_p >= 1.0) {
    double total = full_sum;
    if (params.min_p > 0.0) {
      total = 0.0;
      for (int64_t i = 0; i < vocab_size; ++i)
        if (x[i] >= threshold) total += e[i];
    }
    const double target = uniform * total;
    double acc = 0.0;
    int32_t last = -1;
    for (int64_t i = 0; i < vocab_size; ++i) {
      if (!(x[i] >= threshold)) continue;
      acc += e[i];
      if (e[i] > 0.0f) last = static_cast<int32_t>(i);  // never a masked (-inf) id
      if (acc > target) return last;
    }
    return last;
  }

  int64_t num_sorted = top_k_on ? params.top_k : std::min(vocab_size, kFirstPrefix);
  select_top(num_sorted);
  // The distribution top-p sees: renormalized over the top-k when it is on.
  double norm = full_sum;
  if (top_k_on) {
    norm = 0.0;
    for (int64_t i = 0; i < num_sorted; ++i) norm += e[order_[i]];
  }
  int64_t num_keep = num_sorted;
  if (params.top_p < 1.0) {
    // Smallest best-first prefix whose mass reaches top_p (at least one token); sort more of the
    // vocabulary only when the sorted prefix falls short.
    const double goal = params.top_p * norm;
    double cum = 0.0;
    int64_t i = 0;
    while (true) {
      for (; i < num_sorted && cum < goal; ++i) cum += e[order_[i]];
      if (cum >= goal || num_sorted == vocab_size || top_k_on) break;
      num_sorted = std::min(vocab_size, num_sorted * 8);
      select_top(num_sorted);  // the old prefix stays a prefix: same order, more ids after it
    }
    num_keep = std::max<int64_t>(i, 1);
  }
  double total = 0.0;
  int64_t num_candidates = 0;
  for (; num_candidates < num_keep && x[order_[num_candidates]] >= threshold &&
         (num_candidates == 0 || e[order_[num_candidates]] > 0.0f);
       ++num_candidates)
    total += e[order_[num_candidates]];
  num_candidates = std::max<int64_t>(num_candidates, 1);
  const double target = uniform * total;
  double acc = 0.0;
  for (int64_t i = 0; i < num_candidates; ++i) {
    acc += e[order_[i]];
    if (acc > target) return order_[i];
  }
  return order_[num_candidates - 1];
}

void Sampler::fill_top_logprobs(int64_t n, const Softmax& softmax, SampledToken& out) {
  if (n <= 0) return;
  select_top(n);
  out.top_logprobs.reserve(order_.size());
  for (int32_t id : order_) out.top_logprobs.emplace_back(id, softmax.logprob(x_[id]));
}

bool has_penalties(const SamplingParams& params) {
  return params.repetition_penalty != 1.0 || params.presence_penalty != 0.0 || params.frequency_penalty != 0.0;
}

bool has_logit_processors(const SamplingParams& params) { return !params.logit_bias.empty() || params.min_tokens > 0; }

Result<SampledToken> Sampler::sample_row(const float* logits, int64_t vocab_size, const SamplerRow& row) {
  return sample_row_impl(logits, vocab_size, row, nullptr);
}

Result<SampledToken> Sampler::sample_row_with_uniform(const float* logits, int64_t vocab_size, const SamplerRow& row,
                                                      double uniform) {
  return sample_row_impl(logits, vocab_size, row, &uniform);
}

Result<SampledToken> Sampler::sample_row_impl(const float* logits, int64_t vocab_size, const SamplerRow& row,
                                              const double* uniform) {
  if (logits == nullptr || vocab_size < 1) return bad_row("logits row is empty");
  if (row.params == nullptr) return bad_row("row has no SamplingParams");
  const SamplingParams& params = *row.params;
  if (!params.is_greedy() && row.rng == nullptr && uniform == nullptr) return bad_row("sampling row has no RNG state");
  vocab_size_ = vocab_size;
  x_ = logits;
  if (has_penalties(params) || has_logit_processors(params) || row.allowed != nullptr) {  // copy only when the logits change
    work_.assign(logits, logits + vocab_size);
    if (row.allowed != nullptr) apply_mask(row, vocab_size);  // the grammar first, as vLLM
    TROUPE_TRY(apply_bias_and_min_tokens(row, vocab_size));
    // NOTE: the token ids are read (and checked) only by the penalties. A row without them may
    // belong to a sequence that runs ahead (overlapped scheduling): the engine thread appends to
    // its output_ids while this step samples on the worker, so reading them here would race.
    if (has_penalties(params)) TROUPE_TRY(apply_penalties(row, vocab_size));
    x_ = work_.data();
  }
  const float* x = x_;
  // One pass: NaN check, maximum and its lowest index.
  bool has_nan = false;
  float max_value = -std::numeric_limits<float>::infinity();
  int64_t argmax = 0;
  for (int64_t i = 0; i < vocab_size; ++i) {
    const float v = x[i];
    has_nan |= v != v;
    if (v > max_value) {
      max_value = v;
      argmax = i;
    }
  }
  if (has_nan) return bad_row("logits contain NaN");
  if (!std::isfinite(max_value)) return bad_row("logits have no finite maximum");

  SampledToken out;
  out.token_id = static_cast<int32_t>(argmax);
  if (params.is_greedy() && params.logprobs < 0) return out;  // nothing needs the softmax
  // x stays unscaled; the temperature enters through Softmax. One exp pass feeds both the
  // normalizer (logprobs) and the draw.
  Softmax softmax{max_value, params.is_greedy() ? 1.0f : static_cast<float>(1.0 / params.temperature), 0.0f};
  exp_.resize(vocab_size);
  double full_sum = 0.0;
  for (int64_t i = 0; i < vocab_size; ++i) {
    exp_[i] = std::exp((x[i] - max_value) * softmax.inv_temperature);
    full_sum += exp_[i];
  }
  softmax.log_sum = static_cast<float>(std::log(full_sum));
  if (!params.is_greedy())
    out.token_id = pick(params, uniform ? *uniform : row.rng->next_uniform(), max_value, full_sum);
  out.logprob = softmax.logprob(x[out.token_id]);
  if (params.logprobs > 0) fill_top_logprobs(params.logprobs, softmax, out);
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
