#include "kernels/gather_rows.hpp"

namespace troupe::kernels {
namespace {

template <typename T>
void gather(const T* x, const int32_t* rows, T* out, int64_t num_rows, int64_t dim) {
  for (int64_t r = 0; r < num_rows; ++r)
    for (int64_t i = 0; i < dim; ++i) out[r * dim + i] = x[int64_t(rows[r]) * dim + i];
}

}  // namespace

void gather_rows_ref(const float* x, const int32_t* rows, float* out, int64_t num_rows, int64_t dim) {
  gather(x, rows, out, num_rows, dim);
}

void gather_rows_ref(const uint16_t* x, const int32_t* rows, uint16_t* out, int64_t num_rows, int64_t dim) {
  gather(x, rows, out, num_rows, dim);
}

}  // namespace troupe::kernels
