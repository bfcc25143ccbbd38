#include <cmath>
#include <limits>

#include "kernels/sampling.hpp"

namespace troupe::kernels {

void sample_greedy_ref(const float* logits, int32_t* out, int64_t num_rows, int64_t vocab) {
  for (int64_t r = 0; r < num_rows; ++r) {
    const float* row = logits + r * vocab;
    float best = -std::numeric_limits<float>::infinity();
    int32_t index = -1;
    bool nan = false;
    for (int64_t i = 0; i < vocab; ++i) {
      nan = nan || std::isnan(row[i]);
      if (row[i] > best) {
        best = row[i];
        index = int32_t(i);
      }
    }
    out[r] = nan || !std::isfinite(best) ? -1 : index;
  }
}

}  // namespace troupe::kernels
