#include <cmath>

#include "kernels/host_bf16.hpp"
#include "kernels/rmsnorm.hpp"

namespace troupe::kernels {
namespace {

template <typename OutT>
void store(OutT* p, float v) {
  if constexpr (sizeof(OutT) == 2) {
    *p = host_f32_to_bf16(v);
  } else {
    *p = v;
  }
}

template <typename OutT>
void rmsnorm_rows(const float* x, const float* weight, OutT* out, int64_t num_tokens, int64_t hidden, float eps) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    const float* row = x + t * hidden;
    double sum_sq = 0.0;
    for (int64_t i = 0; i < hidden; ++i) sum_sq += double(row[i]) * row[i];
    const float scale = 1.0f / std::sqrt(float(sum_sq / double(hidden)) + eps);
    for (int64_t i = 0; i < hidden; ++i) store(out + t * hidden + i, row[i] * scale * weight[i]);
  }
}

template <typename OutT>
void add_rmsnorm_rows(float* residual, const float* x, const float* weight, OutT* out, int64_t num_tokens,
                      int64_t hidden, float eps) {
  for (int64_t i = 0; i < num_tokens * hidden; ++i) residual[i] += x[i];
  rmsnorm_rows(residual, weight, out, num_tokens, hidden, eps);
}

}  // namespace

void rmsnorm_ref(const float* x, const float* weight, float* out, int64_t num_tokens, int64_t hidden,
                 float eps) {
  rmsnorm_rows(x, weight, out, num_tokens, hidden, eps);
}

void rmsnorm_ref(const float* x, const float* weight, uint16_t* out, int64_t num_tokens, int64_t hidden,
                 float eps) {
  rmsnorm_rows(x, weight, out, num_tokens, hidden, eps);
}

void add_rmsnorm_ref(float* residual, const float* x, const float* weight, float* out, int64_t num_tokens,
                     int64_t hidden, float eps) {
  add_rmsnorm_rows(residual, x, weight, out, num_tokens, hidden, eps);
}

void add_rmsnorm_ref(float* residual, const float* x, const float* weight, uint16_t* out, int64_t num_tokens,
                     int64_t hidden, float eps) {
  add_rmsnorm_rows(residual, x, weight, out, num_tokens, hidden, eps);
}

}  // namespace troupe::kernels
