#include "kernels/scatter_rows.hpp"

namespace troupe::kernels {

void scatter_rows_ref(const float* x, const int32_t* rows, float* out, int64_t num_rows, int64_t dim) {
  for (int64_t r = 0; r < num_rows; ++r)
    for (int64_t i = 0; i < dim; ++i) out[int64_t(rows[r]) * dim + i] = x[r * dim + i];
}

void add_rows_scaled_ref(const float* x, const int32_t* rows, const float* weights, float* out, int64_t num_rows,
                         int64_t dim) {
  for (int64_t r = 0; r < num_rows; ++r)
    for (int64_t i = 0; i < dim; ++i) out[int64_t(rows[r]) * dim + i] += weights[r] * x[r * dim + i];
}

}  // namespace troupe::kernels
