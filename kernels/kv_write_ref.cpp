#include "kernels/host_bf16.hpp"
#include "kernels/host_fp8.hpp"
#include "kernels/kv_write.hpp"

namespace troupe::kernels {

void write_kv_ref(float* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < entry; ++i) cache[int64_t(slot_mapping[t]) * entry + i] = x[t * entry + i];
}

void write_kv_ref(uint16_t* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < entry; ++i)
      cache[int64_t(slot_mapping[t]) * entry + i] = host_f32_to_bf16(x[t * entry + i]);
}

void write_kv_ref(uint8_t* cache, const float* x, const int32_t* slot_mapping, int64_t n, int64_t entry, float scale) {
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < entry; ++i)
      cache[int64_t(slot_mapping[t]) * entry + i] = host_f32_to_e4m3(x[t * entry + i] / scale);
}

}  // namespace troupe::kernels
