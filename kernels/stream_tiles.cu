#include "kernels/stream_tiles.hpp"

#include "kernels/fp8_stream.cuh"

namespace troupe::kernels {
namespace {

constexpr int kWarps = 8;

// One step of a tile: kRows rows x kChunk bytes, kLoads 16-byte loads a lane; consecutive lanes
// take consecutive 16 bytes of a row.
template <int kRows, int kChunk>
struct TileStep {
  static constexpr int kVecsPerRow = kChunk / 16;
  static constexpr int kLoads = kRows * kVecsPerRow / 32;
  static_assert(kLoads >= 1 && kRows * kVecsPerRow % 32 == 0, "a step is whole warp loads");
};

template <int kRows, int kChunk>
__global__ void __launch_bounds__(kWarps * 32, 2)
    stream_tiles_kernel(const uint8_t* __restrict__ data, int64_t rows, int64_t row_bytes, int rotation,
                        uint32_t* partials) {
  using Step = TileStep<kRows, kChunk>;
  const int warp = int(threadIdx.x / 32), lane = int(threadIdx.x % 32);
  const int64_t tiles = rows / kRows;
  const int steps = int(row_bytes / kChunk);
  uint32_t fold = 0;
  for (int64_t tile = int64_t(blockIdx.x) * kWarps + warp; tile < tiles; tile += int64_t(gridDim.x) * kWarps) {
    const int first = int(tile * rotation % steps);
    const uint8_t* base = data + tile * kRows * row_bytes;
    auto load = [&](uint4 (&d)[Step::kLoads], int s) {
      int c = first + s;
      if (c >= steps) c -= steps;
#pragma unroll
      for (int j = 0; j < Step::kLoads; ++j) {
        const int f = j * 32 + lane, r = f / Step::kVecsPerRow, v = f % Step::kVecsPerRow;
        d[j] = fp8_stream::load_stream16(base + r * row_bytes + int64_t(c) * kChunk + 16 * v, s < steps);
      }
    };
    auto fold_in = [&](const uint4 (&d)[Step::kLoads]) {
#pragma unroll
      for (int j = 0; j < Step::kLoads; ++j) fold ^= d[j].x ^ d[j].y ^ d[j].z ^ d[j].w;
    };
    uint4 a[Step::kLoads], b[Step::kLoads], c[Step::kLoads];
    load(a, 0);
    load(b, 1);
    for (int s = 0; s < steps; s += 3) {  // loads past the last step are predicated off (zeros)
      load(c, s + 2);
      fold_in(a);
      load(a, s + 3);
      fold_in(b);
      load(b, s + 4);
      fold_in(c);
    }
  }
  __shared__ uint32_t warp_folds[kWarps];
  for (int offset = 16; offset > 0; offset /= 2) fold ^= __shfl_xor_sync(0xffffffffu, fold, offset);
  if (lane == 0) warp_folds[warp] = fold;
  __syncthreads();
  if (threadIdx.x == 0) {
    uint32_t all = 0;
    for (int w = 0; w < kWarps; ++w) all ^= warp_folds[w];
    partials[blockIdx.x] = all;
  }
}

template <int kRows, int kChunk>
cudaError_t launch(const void* data, int64_t rows, int64_t row_bytes, int rotation, uint32_t* partials, int blocks,
                   cudaStream_t stream) {
  stream_tiles_kernel<kRows, kChunk><<<blocks, kWarps * 32, 0, stream>>>(static_cast<const uint8_t*>(data), rows,
                                                                       row_bytes, rotation, partials);
  return cudaGetLastError();
}

}  // namespace

bool stream_tiles_supported(int rows_per_warp, int chunk) {
  return (rows_per_warp == 16 && (chunk == 64 || chunk == 128 || chunk == 256)) ||
         (rows_per_warp == 8 && (chunk == 256 || chunk == 512)) || (rows_per_warp == 4 && chunk == 512);
}

cudaError_t launch_stream_tiles(const void* data, int64_t rows, int64_t row_bytes, int rows_per_warp, int chunk,
                                int rotation, uint32_t* partials, int blocks, cudaStream_t stream) {
  if (!stream_tiles_supported(rows_per_warp, chunk) || rows <= 0 || rows % rows_per_warp != 0 || row_bytes <= 0 ||
      row_bytes % chunk != 0 || row_bytes / chunk > INT32_MAX || rotation < 0 || blocks <= 0 || blocks > 65535 ||
      reinterpret_cast<uintptr_t>(data) % 16 != 0)
    return cudaErrorInvalidValue;
  switch (rows_per_warp * 1000 + chunk) {
    case 16064: return launch<16, 64>(data, rows, row_bytes, rotation, partials, blocks, stream);
    case 16128: return launch<16, 128>(data, rows, row_bytes, rotation, partials, blocks, stream);
    case 16256: return launch<16, 256>(data, rows, row_bytes, rotation, partials, blocks, stream);
    case 8256: return launch<8, 256>(data, rows, row_bytes, rotation, partials, blocks, stream);
    case 8512: return launch<8, 512>(data, rows, row_bytes, rotation, partials, blocks, stream);
    default: return launch<4, 512>(data, rows, row_bytes, rotation, partials, blocks, stream);
  }
}

}  // namespace troupe::kernels
