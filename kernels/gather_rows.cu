// The row gather kernel (gather_rows.hpp).
#include <cstdint>

#include "kernels/cuda_common.cuh"
#include "kernels/dependent_launch.cuh"
#include "kernels/gather_rows.hpp"

namespace troupe::kernels {
namespace {

// T: float or uint16_t (bf16 bits, copied as they are).
template <typename T>
__global__ void gather_rows_kernel(const T* x, const int32_t* rows, T* out, int64_t dim) {
  allow_dependents();  // the next kernel may become resident (a GEMV starts loading weights)
  wait_for_prerequisites();
  const T* src = x + int64_t(rows[blockIdx.x]) * dim;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) out[blockIdx.x * dim + i] = src[i];
}

}  // namespace

cudaError_t launch_gather_rows_f32(const float* x, const int32_t* rows, float* out, int64_t num_rows, int64_t dim,
                                   cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  if (bad_rows(num_rows)) return cudaErrorInvalidValue;
  gather_rows_kernel<<<unsigned(num_rows), kThreads, 0, stream>>>(x, rows, out, dim);
  return cudaGetLastError();
}

cudaError_t launch_gather_rows_bf16(const uint16_t* x, const int32_t* rows, uint16_t* out, int64_t num_rows,
                                    int64_t dim, cudaStream_t stream) {
  if (num_rows == 0) return cudaSuccess;
  if (bad_rows(num_rows)) return cudaErrorInvalidValue;
  gather_rows_kernel<<<unsigned(num_rows), kThreads, 0, stream>>>(x, rows, out, dim);
  return cudaGetLastError();
}

}  // namespace troupe::kernels
