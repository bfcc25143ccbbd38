#pragma once
// A read-only pass over a [rows, row_bytes] matrix in the order a tiled GEMV streams its weights: a
// warp owns `rows_per_warp` consecutive rows (a tile) and walks along them `chunk` bytes of each
// row a step, three steps in flight (the FP8 GEMV's ring); the CTAs (8 warps, two per SM) take the
// tiles blockIdx.x * 8 + warp, + gridDim.x * 8, .... Tile t starts its walk at step
// (t * rotation) % steps and wraps, so tiles running at once read different columns. It measures
// what the order alone costs against kernels/stream_read's contiguous pass (bench/hbm_pattern_bench).
// Every 16-byte word is loaded once and folded by XOR, so the per-block folds XOR to
// stream_read_ref over the matrix.
#include <cstddef>
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

#ifdef TROUPE_HAVE_CUDA
// The (rows_per_warp, chunk) pairs the probe is built for: 16 rows of 64, 128 or 256 bytes, 8 of
// 256 or 512, 4 of 512.
bool stream_tiles_supported(int rows_per_warp, int chunk);

// rows a multiple of rows_per_warp, row_bytes a multiple of chunk, data 16-byte aligned,
// blocks in [1, 65535], rotation >= 0; writes one fold per block into `partials`.
cudaError_t launch_stream_tiles(const void* data, int64_t rows, int64_t row_bytes, int rows_per_warp, int chunk,
                                int rotation, uint32_t* partials, int blocks, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
