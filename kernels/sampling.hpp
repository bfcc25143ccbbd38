#pragma once
// Token sampling on the GPU (Backend::sample_on_device): per row greedy argmax, or the host
// Sampler's temperature -> top-k -> top-p -> min-p filter and inverse-CDF pick for the row's
// uniform, in the same candidate order (id order without top-k / top-p, else best-first by logit,
// then lower id), so a row picks the token Sampler::sample_row picks except at rounding boundaries.
// The CPU reference of the greedy rows is sample_greedy_ref (sampling_ref.cpp); the filtered rows
// are checked against the host Sampler itself (tests/gpu/device_sampling_test.cpp).
#include <cstddef>
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// One row's filters and the uniform the host drew for it (the fields of the engine's
// SampleRow, which the backend copies into this struct).
struct SampleRow {
  double temperature = 1.0;  // 0: greedy (argmax, first index on ties)
  int64_t top_k = -1;        // -1 or 0: off
  double top_p = 1.0;        // (0, 1]
  double min_p = 0.0;        // [0, 1]
  double uniform = 0.0;      // [0, 1): picks the token by inverse CDF
};

// CPU reference of a greedy row (temperature 0): out[r] = the first index of the row's maximum, or
// -1 when the row has a NaN or its maximum is not finite. logits: [num_rows, vocab]; out: [num_rows].
void sample_greedy_ref(const float* logits, int32_t* out, int64_t num_rows, int64_t vocab);

#ifdef TROUPE_HAVE_CUDA
// Device workspace bytes launch_sample_f32 needs for these rows (host array) over `vocab` logits.
size_t sample_workspace_bytes(const SampleRow* rows, int64_t num_rows, int64_t vocab);

// out[r] = the sampled token of row r, or -1 when the row has a NaN or no finite maximum.
// logits: [num_rows, vocab] fp32 on the device; rows: [num_rows] in host memory; out: [num_rows]
// on the device; workspace: at least sample_workspace_bytes(rows, num_rows, vocab) device bytes.
cudaError_t launch_sample_f32(const float* logits, const SampleRow* rows, int64_t num_rows, int64_t vocab,
                              int32_t* out, void* workspace, size_t workspace_bytes, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
