#include <cstddef>

#include "kernels/fp8_block_gemm.hpp"
#include "kernels/fp8_quant.hpp"
#include "kernels/host_fp8.hpp"
#include "kernels/moe_grouped_gemm.hpp"

namespace troupe::kernels {

std::vector<MoeGemmTile> moe_gemm_tiles(const int32_t* offsets, int32_t num_segments, int64_t tile_rows) {
  std::vector<MoeGemmTile> tiles;
  for (int32_t e = 0; e < num_segments; ++e) {
    const int32_t first = offsets[e], count = offsets[e + 1] - offsets[e];
    for (int32_t r = 0; r < count; r += int32_t(tile_rows)) {
      const int32_t rows = count - r < int32_t(tile_rows) ? count - r : int32_t(tile_rows);
      tiles.push_back({e, first + r, rows, first, count});
    }
  }
  return tiles;
}

void moe_grouped_gemm_ref(const float* x, const float* x_scale, const uint8_t* const* w, const float* const* w_scale,
                          const int32_t* offsets, int32_t num_segments, double* out, int64_t n, int64_t k) {
  const int64_t num_kb = fp8_num_blocks(k);
  for (int32_t e = 0; e < num_segments; ++e) {
    const int64_t first = offsets[e], count = offsets[e + 1] - offsets[e];
    if (count == 0) continue;
    fp8_block_gemm_ref(x + first * k, x_scale + num_kb * first, w[e], w_scale[e], out + first * n, count, n, k);
  }
}

}  // namespace troupe::kernels
