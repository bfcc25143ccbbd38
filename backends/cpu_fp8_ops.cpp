// CpuBackend::linear_fp8_block: the dequantizing reference. Weight rows are widened 128 at a time
// (one scale row: W[r, c] = fp8 * scale_inv[r / 128, c / 128], exact in fp32, as
// dequantize_fp8_block computes it), then one sgemm per block into the block's output columns,
// so the fp32 copy of W never exists whole. x and out fp32 (CpuBackend's matmul_input_dtype).
#include <cblas.h>

#include <algorithm>
#include <vector>

#include "backends/cpu_backend.hpp"

namespace troupe {

void CpuBackend::linear_fp8_block(const Tensor& x, const Tensor& weight_fp8, const Tensor& scale_inv, Tensor out) {
  constexpr int64_t kBlock = 128;
  const int64_t out_features = weight_fp8.size(0), in = weight_fp8.size(1), n = x.numel() / in;
  if (n == 0) return;
  const int64_t scale_cols = (in + kBlock - 1) / kBlock;
  const uint8_t* w = weight_fp8.data<uint8_t>();
  const float* scales = scale_inv.data<float>();
  float lut[256];  // every e4m3 code
  for (int code = 0; code < 256; ++code) lut[code] = f8_e4m3_to_f32(uint8_t(code));
  std::vector<float> block(static_cast<size_t>(std::min(kBlock, out_features) * in));
  for (int64_t r0 = 0; r0 < out_features; r0 += kBlock) {
    const int64_t rows = std::min(kBlock, out_features - r0);
    const float* scale_row = scales + (r0 / kBlock) * scale_cols;
    pool_.parallel_for(rows, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const uint8_t* src = w + (r0 + r) * in;
        float* dst = block.data() + r * in;
        for (int64_t c = 0; c < in; ++c) dst[c] = lut[src[c]] * scale_row[c / kBlock];
      }
    }, 1);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(rows), int(in), 1.0f, x.data<float>(), int(in),
                block.data(), int(in), 0.0f, out.data<float>() + r0, int(out_features));
  }
}

}  // namespace troupe
