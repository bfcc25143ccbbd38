#pragma once
// The engine step's `sample`: one token per row of a forward's logits, on the device when the
// backend can and every row allows it, else on the host.
//
//   rows without penalties, logprobs, logit_bias and min_tokens, backend not the CPU --> draw each non-greedy row's
//       uniform (once per token, as the host Sampler would) --> Backend::sample_on_device
//           declined --> restore the drawn RNGs --+
//   otherwise ---------------------------------------+--> to_host(logits) --> Sampler::sample
//
// So a seeded request gives the same tokens whichever side sampled. A structured-output mask
// (SamplerRow::allowed) goes with its row: the device applies it first (kernels/token_mask), as
// the host Sampler does.
#include <cstdint>
#include <vector>

#include "runtime/backend.hpp"
#include "engine/sampler.hpp"

namespace troupe {

class SamplingStep {
 public:
  SamplingStep(Backend& backend, int64_t vocab_size, std::vector<int32_t> eos_token_ids = {})
      : backend_(&backend), vocab_size_(vocab_size) {
    sampler_.set_eos_token_ids(std::move(eos_token_ids));
  }

  // logits: [rows.size(), vocab] fp32 on the backend's device. One token per row, in order.
  Result<std::vector<SampledToken>> sample(const Tensor& logits, const std::vector<SamplerRow>& rows);

 private:
  bool can_sample_on_device(const Tensor& logits, const std::vector<SamplerRow>& rows) const;
  // False (RNGs untouched) when the backend declined.
  bool sample_on_device(const Tensor& logits, const std::vector<SamplerRow>& rows, std::vector<SampledToken>* out);

  Backend* backend_;
  int64_t vocab_size_;
  Sampler sampler_;
};

}  // namespace troupe
