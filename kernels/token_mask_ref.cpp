#include "kernels/token_mask.hpp"

#include <limits>

namespace troupe::kernels {

void apply_token_mask_ref(float* logits, int64_t vocab, const int32_t* rows, int64_t num_rows, const uint32_t* masks,
                          int64_t num_words) {
  for (int64_t k = 0; k < num_rows; ++k) {
    float* row = logits + int64_t(rows[k]) * vocab;
    const uint32_t* mask = masks + k * num_words;
    for (int64_t i = 0; i < vocab; ++i)
      if (!((mask[i >> 5] >> (i & 31)) & 1u)) row[i] = -std::numeric_limits<float>::infinity();
  }
}

}  // namespace troupe::kernels
