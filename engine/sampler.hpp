#pragma once
// Sampler: turns one row of fp32 logits per sequence into a token id, its logprob and (when asked)
// the top logprobs. Processing order as vLLM: the structured-output mask -> penalties -> temperature -> top-k -> top-p -> min-p
// -> sample. Each sequence brings its own RNG, so a seeded request draws the same tokens whatever
// else shares its batch.
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "runtime/result.hpp"
#include "engine/sampling_params.hpp"

namespace troupe {

// Per-request generator: seeded from SamplingParams::seed (-1: from std::random_device) and
// advanced exactly once per non-greedy sampled token.
struct SequenceRng {
  std::mt19937_64 engine;

  explicit SequenceRng(int64_t seed = -1);
  double next_uniform();  // in [0, 1), 53 random bits, one engine step
};

// One row of the batch. Pointers are borrowed for the duration of Sampler::sample.
struct SamplerRow {
  const SamplingParams* params = nullptr;
  const std::vector<int32_t>* prompt_ids = nullptr;  // repetition penalty only; may be null
  const std::vector<int32_t>* output_ids = nullptr;  // all penalties; may be null
  SequenceRng* rng = nullptr;                        // required unless params->is_greedy()
  // Structured outputs: bit i of allowed[i / 32] set iff id i may be sampled (the others' logits
  // become -inf before anything else). Null: no constraint.
  const uint32_t* allowed = nullptr;
  int64_t num_allowed_words = 0;  // ceil(vocab / 32) when allowed is set
};

struct SampledToken {
  int32_t token_id = -1;
  // log-softmax of the processed logits (after penalties, divided by the temperature when it is
  // > 0), taken before the top-k / top-p / min-p truncation. Left 0 for a greedy row that asks
  // no logprobs (params.logprobs == -1), which then skips the softmax.
  float logprob = 0.0f;
  std::vector<std::pair<int32_t, float>> top_logprobs;  // params.logprobs entries, best first
};

// NOTE: not thread-safe (reuses scratch buffers); use one Sampler per engine thread.
class Sampler {
 public:
  // The model's EOS ids, which min_tokens keeps from being sampled (with params.stop_token_ids).
  void set_eos_token_ids(std::vector<int32_t> ids) { eos_token_ids_ = std::move(ids); }

  // logits: [num_seqs, vocab_size] row-major fp32. rows.size() == num_seqs.
  Result<std::vector<SampledToken>> sample(const float* logits, int64_t num_seqs, int64_t vocab_size,
                                           const std::vector<SamplerRow>& rows);

  // One row; logits: [vocab_size].
  Result<SampledToken> sample_row(const float* logits, int64_t vocab_size, const SamplerRow& row);
  // The same with `uniform` in place of the row's next RNG draw (row.rng is neither needed nor
  // advanced): what a device sampler must reproduce for that uniform.
  Result<SampledToken> sample_row_with_uniform(const float* logits, int64_t vocab_size, const SamplerRow& row,
                                               double uniform);

 private:
  Result<SampledToken> sample_row_impl(const float* logits, int64_t vocab_size, const SamplerRow& row,
                                       const double* uniform);
  Status apply_penalties(const SamplerRow& row, int64_t vocab_size);
  // logit_bias, then -inf on the stop ids while min_tokens is not reached (into work_).
  Status apply_bias_and_min_tokens(const SamplerRow& row, int64_t vocab_size);
  void apply_mask(const SamplerRow& row, int64_t vocab_size);
  int32_t pick(const SamplingParams& params, double uniform, float max_value, double full_sum);
  struct Softmax {
    float max_value;
    float inv_temperature;
    float log_sum;  // log(sum(exp((x - max_value) * inv_temperature)))
    float logprob(float x) const { return (x - max_value) * inv_temperature - log_sum; }
  };
  void fill_top_logprobs(int64_t n, const Softmax& softmax, SampledToken& out);
  void select_top(int64_t k);

  const float* x_ = nullptr;       // [vocab] current row: the input, or work_ after penalties
  int64_t vocab_size_ = 0;
  std::vector<float> work_;        // [vocab] penalized copy of the logits
  std::vector<float> exp_;         // [vocab] exp((x_ - max) / T)
  std::vector<int32_t> counts_;    // [vocab] output-token counts, zero between rows
  std::vector<uint8_t> seen_;      // [vocab] seen in prompt or output, zero between rows
  std::vector<int32_t> order_;     // candidate ids
  std::vector<int32_t> eos_token_ids_;
};

// True when the row's logits are changed by repetition, presence or frequency penalties.
bool has_penalties(const SamplingParams& params);
// True when logit_bias or min_tokens may change the row's logits (min_tokens > 0 counts always:
// whether it still applies depends on the number of tokens generated).
bool has_logit_processors(const SamplingParams& params);

// True when `token_id` ends generation: one of params.stop_token_ids, or an EOS id unless
// params.ignore_eos.
bool is_stop_token(int32_t token_id, const SamplingParams& params, const std::vector<int32_t>& eos_token_ids);

}  // namespace troupe
