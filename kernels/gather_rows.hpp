#pragma once
// Row gather: out[i, :] = x[rows[i], :], fp32 or bf16 rows (bits copied as they are), e.g. the last
// token of each sequence before the LM head. Three layers: the __global__ kernel (gather_rows.cu:
// one block per output row), these raw-pointer launchers, and the CPU reference (gather_rows_ref.cpp).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU reference. x: [num_x_rows, dim]; rows: [num_rows]; out: [num_rows, dim].
void gather_rows_ref(const float* x, const int32_t* rows, float* out, int64_t num_rows, int64_t dim);
void gather_rows_ref(const uint16_t* x, const int32_t* rows, uint16_t* out, int64_t num_rows, int64_t dim);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, shapes as gather_rows_ref. num_rows == 0 does nothing; num_rows > INT32_MAX
// gives cudaErrorInvalidValue.
cudaError_t launch_gather_rows_f32(const float* x, const int32_t* rows, float* out, int64_t num_rows, int64_t dim,
                                   cudaStream_t stream);
// The same over bf16 rows (bits copied as they are).
cudaError_t launch_gather_rows_bf16(const uint16_t* x, const int32_t* rows, uint16_t* out, int64_t num_rows,
                                    int64_t dim, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
