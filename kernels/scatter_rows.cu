// The row scatter kernels (scatter_rows.hpp).
#include <cstdint>

#include "kernels/cuda_common.cuh"
#include "kernels/dependent_launch.cuh"
#include "kernels/scatter_rows.hpp"

namespace troupe::kernels {
namespace {

constexpr int64_t kRowsPerBlock = 8;  // add_rows_scaled over distinct rows

__global__ void scatter_rows_kernel(const float* x, const int32_t* rows, float* out, int64_t dim) {
  allow_dependents();
  wait_for_prerequisites();
  float* dst = out + int64_t(rows[blockIdx.x]) * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) dst[i] = x[blockIdx.x * dim + i];
}

// Block (x, y): columns x * kThreads + threadIdx.x of rows [y * rows_per_block, + rows_per_block),
// in order.
__global__ void add_rows_scaled_kernel(const float* x, const int32_t* rows, const float* weights, float* out,
                                       int64_t num_rows, int64_t dim, int64_t rows_per_block) {
  allow_dependents();
  wait_for_prerequisites();
  const int64_t c = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (c >= dim) return;
  const int64_t first = int64_t(blockIdx.y) * rows_per_block, last = min(num_rows, first + rows_per_block);
  for (int64_t r = first; r < last; ++r) out[int64_t(rows[r]) * dim + c] += weights[r] * x[r * dim + c];
}

}  // namespace

cudaError_t launch_scatter_rows_f32(const float* x, const int32_t* rows, float* out, int64_t num_rows, int64_t dim,
                                    cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  if (bad_rows(num_rows)) return cudaErrorInvalidValue;
  return launch_dependent(scatter_rows_kernel, dim3(unsigned(num_rows)), dim3(kThreads), 0, stream, x, rows, out, dim);
}

cudaError_t launch_add_rows_scaled_f32(const float* x, const int32_t* rows, const float* weights, float* out,
                                       int64_t num_rows, int64_t dim, bool distinct_rows, cudaStream_t stream) {
  if (num_rows == 0 || dim == 0) return cudaSuccess;
  if (bad_rows(num_rows) || dim < 0 || dim > int64_t(kThreads) * 65535) return cudaErrorInvalidValue;
  const int64_t per_block = distinct_rows ? kRowsPerBlock : num_rows;
  const int64_t row_blocks = (num_rows + per_block - 1) / per_block;
  if (row_blocks > 65535) return launch_add_rows_scaled_f32(x, rows, weights, out, num_rows, dim, false, stream);
  const dim3 grid(blocks_for(dim), unsigned(row_blocks));
  return launch_dependent(add_rows_scaled_kernel, grid, dim3(kThreads), 0, stream, x, rows, weights, out, num_rows,
                          dim, per_block);
}

}  // namespace troupe::kernels
