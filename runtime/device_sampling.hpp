#pragma once
// One row of a batch sampled on the device (Backend::sample_on_device): the filters of a row that
// needs neither penalties nor logprobs, and the uniform the host drew from the row's SequenceRng
// (ignored for greedy rows). The fields stay double where SamplingParams is double so the device
// applies the same thresholds as the host Sampler.
#include <cstdint>

namespace troupe {

struct DeviceSampleRow {
  double temperature = 1.0;  // 0: greedy (argmax, first index on ties)
  int64_t top_k = -1;        // -1 or 0: off
  double top_p = 1.0;        // (0, 1]
  double min_p = 0.0;        // [0, 1]
  double uniform = 0.0;      // [0, 1): picks the token as Sampler::sample_row does
  // Structured outputs (host memory, borrowed for the call): bit i of allowed[i / 32] set iff id i
  // may be sampled; the others' logits become -inf first, as the host Sampler masks. Null: none.
  const uint32_t* allowed = nullptr;
  int64_t num_allowed_words = 0;  // ceil(vocab / 32) when allowed is set
};

}  // namespace troupe
