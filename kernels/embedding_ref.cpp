#include "kernels/embedding.hpp"
#include "kernels/host_bf16.hpp"

namespace troupe::kernels {

void embedding_ref(const int32_t* ids, const float* table, float* out, int64_t n, int64_t hidden) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < hidden; ++i) out[t * hidden + i] = table[int64_t(ids[t]) * hidden + i];
}

void embedding_ref(const int32_t* ids, const uint16_t* table, float* out, int64_t n, int64_t hidden) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < hidden; ++i) out[t * hidden + i] = host_bf16_to_f32(table[int64_t(ids[t]) * hidden + i]);
}

}  // namespace troupe::kernels
