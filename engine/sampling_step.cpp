#include "engine/sampling_step.hpp"

namespace troupe {

Result<std::vector<SampledToken>> SamplingStep::sample(const Tensor& logits, const std::vector<SamplerRow>& rows) {
  std::vector<SampledToken> sampled;
  if (rows.empty()) return sampled;
  if (can_sample_on_device(logits, rows) && sample_on_device(logits, rows, &sampled)) return sampled;
  const Tensor host_logits = backend_->to_host(logits);
  return sampler_.sample(host_logits.data<float>(), int64_t(rows.size()), vocab_size_, rows);
}

bool SamplingStep::can_sample_on_device(const Tensor& logits, const std::vector<SamplerRow>& rows) const {
  if (backend_->device() == Device::cpu || logits.dim() != 2 || logits.size(1) != vocab_size_) return false;
  for (const SamplerRow& row : rows) {
    const SamplingParams& p = *row.params;
    // NOTE: logit_bias and min_tokens rows fall back to the host Sampler (the device kernel takes
    // no per-row logit edits); the batch then samples on the host, the same tokens either way.
    if (has_penalties(p) || has_logit_processors(p) || p.logprobs >= 0 || (!p.is_greedy() && row.rng == nullptr))
      return false;
  }
  return true;
}

bool SamplingStep::sample_on_device(const Tensor& logits, const std::vector<SamplerRow>& rows,
                                    std::vector<SampledToken>* out) {
  std::vector<DeviceSampleRow> device_rows;
  std::vector<SequenceRng> saved;  // the drawn rows' RNGs before the draw
  device_rows.reserve(rows.size());
  for (const SamplerRow& row : rows) {
    const SamplingParams& p = *row.params;
    DeviceSampleRow d{p.temperature, p.top_k, p.top_p, p.min_p, 0.0};
    d.allowed = row.allowed;  // structured outputs: the backend masks before it samples
    d.num_allowed_words = row.num_allowed_words;
    if (!p.is_greedy()) {
      saved.push_back(*row.rng);
      d.uniform = row.rng->next_uniform();
    }
    device_rows.push_back(d);
  }
  std::vector<int32_t> ids;
  if (backend_->sample_on_device(logits, device_rows, &ids) && ids.size() == rows.size()) {
    out->assign(rows.size(), SampledToken{});
    for (size_t k = 0; k < rows.size(); ++k) (*out)[k].token_id = ids[k];
    return true;
  }
  size_t next = 0;
  for (const SamplerRow& row : rows)
    if (!row.params->is_greedy()) *row.rng = saved[next++];
  return false;
}

}  // namespace troupe
