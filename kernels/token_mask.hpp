#pragma once
// Structured outputs on the device: the token mask applied to a batch's logits before sampling.
//   logits[rows[k], i] = -inf unless bit (i % 32) of masks[k * num_words + i / 32] is set.
// Three layers: the __global__ kernel (token_mask.cu: a 2-D grid, x over the vocabulary, y over
// the masked rows), this launcher, and the CPU reference with the same rule (token_mask_ref.cpp).
// Called by CudaBackend::sample_on_device for rows with a DeviceSampleRow::allowed mask.
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// logits: [num_logit_rows, vocab] row-major; rows: [num_rows] indices into it; masks:
// [num_rows, num_words] with num_words = ceil(vocab / 32).
void apply_token_mask_ref(float* logits, int64_t vocab, const int32_t* rows, int64_t num_rows, const uint32_t* masks,
                          int64_t num_words);

#ifdef TROUPE_HAVE_CUDA
// Device pointers. cudaErrorInvalidValue when num_words < ceil(vocab / 32) or a size is negative.
cudaError_t launch_apply_token_mask_f32(float* logits, int64_t vocab, const int32_t* rows, int64_t num_rows,
                                        const uint32_t* masks, int64_t num_words, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
