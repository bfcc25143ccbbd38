#pragma once
// Row scatters, the inverse of gather_rows: out[rows[i], :] = x[i, :] (scatter_rows: a sub-batch's
// results back into the batch), and out[rows[i], :] += weights[i] * x[i, :] (add_rows_scaled: the
// MoE combine of one expert's outputs). fp32 rows. Three layers: the kernels (scatter_rows.cu),
// these launchers, and the CPU references (scatter_rows_ref.cpp: rows in order, so a repeated row
// adds up in order).
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// CPU references. x: [num_rows, dim]; rows, weights: [num_rows]; out: [num_out_rows, dim].
void scatter_rows_ref(const float* x, const int32_t* rows, float* out, int64_t num_rows, int64_t dim);
void add_rows_scaled_ref(const float* x, const int32_t* rows, const float* weights, float* out, int64_t num_rows,
                         int64_t dim);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, shapes as the references. num_rows == 0 does nothing. scatter_rows: rows distinct.
cudaError_t launch_scatter_rows_f32(const float* x, const int32_t* rows, float* out, int64_t num_rows, int64_t dim,
                                    cudaStream_t stream);
// distinct_rows: no row repeats, so rows run in parallel; otherwise each column adds the rows in
// order (as the reference), one thread per column.
cudaError_t launch_add_rows_scaled_f32(const float* x, const int32_t* rows, const float* weights, float* out,
                                       int64_t num_rows, int64_t dim, bool distinct_rows, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
