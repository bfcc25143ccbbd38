#include <cfloat>

#include "kernels/argmax.hpp"

namespace troupe::kernels {

void argmax_ref(const float* logits, int32_t* out, int64_t rows, int64_t vocab) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = logits + r * vocab;
    float value = -FLT_MAX;
    int32_t index = 0x7fffffff;
    for (int64_t i = 0; i < vocab; ++i) {
      if (row[i] > value) {
        value = row[i];
        index = int32_t(i);
      }
    }
    out[r] = index;
  }
}

}  // namespace troupe::kernels
