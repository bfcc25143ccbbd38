#include <cuda_bf16.h>

#include "kernels/fp8_gemv_f16.hpp"
#include "kernels/fp8_gemv_f16_tiles.cuh"

// The dense launch: fp8_gemv_f16_tiles.cuh's layout, staging helpers and plan, with the tile loop
// written out for rows 16 r .. 16 r + 15 and out[token, row] rather than through the header's
// gemv_tiles and an Out policy: that shared loop ran Llama-3-8B FP8's b1 step 3% slower (3.30
// against 3.20 ms, the two builds in one H200 run, bench/results/*2026-12-04_f16_tiles_shared*),
// so the MoE kernel alone takes it. Keep the two loops' arithmetic the same.
namespace troupe::kernels {
namespace {

using namespace f16_tiles;

__device__ __forceinline__ void store_out(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_out(uint16_t* p, float v) {
  *reinterpret_cast<__nv_bfloat16*>(p) = __float2bfloat16_rn(v);
}

// 96 registers: two CTAs of 8 warps take three quarters of an SM's register file and leave room
// for the kernels before and after it in a decode step (programmatic dependent launch). At the
// compiler's 125 two CTAs filled the file; that alone was not what the Llama-3-8B FP8 b1 step lost
// beside the row kernel (3.97 ms at 96, 4.03 at 125, 3.54 on the row kernel: the shared-memory
// carveout was, kernels/smem_carveout.hpp), but the step that gained, 3.25 ms with the carveout,
// was measured at 96; in isolation 125 streamed 2-5% faster (o 0.66 against 0.63 of HBM).
template <typename XT, typename OT>
__global__ void __maxnreg__(96)
    fp8_gemv_f16_kernel(const XT* __restrict__ x, const uint8_t* __restrict__ w, const float* __restrict__ w_scale,
                        OT* __restrict__ out, int m, int n, int k, int num_kb, int sharing) {
  extern __shared__ uint4 smem[];
  __shared__ float sums[2][kWarps][4][32];
  const int row_halves = num_kb * 128 + kRowPad;
  __half* xs = reinterpret_cast<__half*>(smem);                       // [m][row_halves]
  float* xe = reinterpret_cast<float*>(xs + int64_t(m) * row_halves);  // [m][num_kb]: 2^e
  const int warp = int(threadIdx.x / 32), lane = int(threadIdx.x % 32), g = lane / 4, t = lane % 4;
  const int slots = kWarps / sharing, slot = warp / sharing, member = warp % sharing;
  const int num_tiles = (n + kTileRows - 1) / kTileRows, tile_step = int(gridDim.x) * slots;
  allow_dependents();  // the next kernel may become resident and start on its own weights

  // A warp's work: the tiles of its slot in turn, in each the K blocks of its member. Members past
  // the last K block (num_kb < sharing) have none and stay out of the slot's barriers.
  const int active = min(sharing, num_kb);
  const bool working = member < active;
  auto load_block = [&](uint4 (&d)[4], const Cursor& c) {
    if (!c.valid(num_tiles, num_kb)) return;
    const int row = c.tile * kTileRows + g;
    const int64_t kb0 = int64_t(c.kb) * kFp8BlockSize;
    load_w_piece<true>(w + int64_t(min(row, n - 1)) * k, kb0, t, k, d[0], d[1]);
    load_w_piece<true>(w + int64_t(min(row + 8, n - 1)) * k, kb0, t, k, d[2], d[3]);
  };
  // Three buffers in a ring, two K blocks in flight while the third is multiplied; the loop below
  // turns the ring by naming, never by copying registers whose loads may still be in flight.
  uint4 wa[4], wb[4], wc[4];
  const Cursor start{int(blockIdx.x) * slots + slot, member};
  Cursor ahead = start;
  // Weights are never written by a kernel, so the first two blocks may load before x is ready.
  if (working) {
    load_block(wa, ahead);
    ahead.advance(member, sharing, num_kb, tile_step);
    load_block(wb, ahead);
    ahead.advance(member, sharing, num_kb, tile_step);
  }
  wait_for_prerequisites();

  // Stage x: items (token, K block) of 8 lanes each, lane l's 16 values at 16 (l % 8); a warp takes
  // 4 items per pass and issues the loads of kBatch passes before it reduces any (the items' loads
  // are independent; done one by one they cost a round trip each, several microseconds at K 14336;
  // more passes at once do not fit the 96 registers).
  constexpr int kBatch = 2;
  const int items = m * num_kb, quad = lane / 8, eighth = lane % 8;
  for (int base = warp * 4; base < items; base += kWarps * 4 * kBatch) {
    RawOf<XT> raw[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int item = base + b * kWarps * 4 + quad, tok = item / num_kb, kb = item % num_kb;
      const int64_t k0 = int64_t(kb) * kFp8BlockSize + 16 * eighth;
      load_raw(x + int64_t(min(tok, m - 1)) * k, k0, item < items && k0 < k, raw[b]);
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int item = base + b * kWarps * 4 + quad, tok = item / num_kb, kb = item % num_kb;
      float v[16];
      widen(raw[b], v);
      float amax = 0.0f;
#pragma unroll
      for (int i = 0; i < 16; ++i) amax = fmaxf(amax, fabsf(v[i]));
#pragma unroll
      for (int offset = 4; offset > 0; offset /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
      if (item >= items) continue;
      // e: the largest |x| times 2^-e in [2^14, 2^15), inside f16's normal range; clamped so that
      // both 2^e and 2^-e are normal floats (a block of zeros takes the clamp).
      const int e = min(max(((__float_as_int(amax) >> 23) & 0xff) - 127 - 14, -100), 100);
      const float down = __int_as_float((127 - e) << 23);
      uint4 packed[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        packed[h].x = pack_f16x2(v[8 * h] * down, v[8 * h + 1] * down);
        packed[h].y = pack_f16x2(v[8 * h + 2] * down, v[8 * h + 3] * down);
        packed[h].z = pack_f16x2(v[8 * h + 4] * down, v[8 * h + 5] * down);
        packed[h].w = pack_f16x2(v[8 * h + 6] * down, v[8 * h + 7] * down);
      }
      uint4* dst = reinterpret_cast<uint4*>(xs + int64_t(tok) * row_halves + kb * 128 + 16 * eighth);
      dst[0] = packed[0], dst[1] = packed[1];
      if (eighth == 0) xe[tok * num_kb + kb] = __int_as_float((127 + e) << 23);
    }
  }
  __syncthreads();
  if (!working) return;  // no CTA-wide barrier follows

  const int xt = min(g, m - 1);  // the token of this lane's B column (column g; past m a copy)
  const __half* x_row = xs + int64_t(xt) * row_halves;
  const int tok_lo = min(2 * t, m - 1), tok_hi = min(2 * t + 1, m - 1);  // c0 / c2 and c1 / c3
  float total[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  int parity = 0;

  // The tile's sums (c0, c1: row g, tokens 2t, 2t + 1; c2, c3: row g + 8) to out; a shared tile's
  // members meet at the slot's named barrier and member 0 adds them in member order. sums[parity]
  // was last read two tiles ago, before the barrier of the tile in between.
  auto finish_tile = [&](int tile) {
    if (active > 1) {
#pragma unroll
      for (int j = 0; j < 4; ++j) sums[parity][warp][j][lane] = total[j];
      mma::named_barrier(1 + slot, active * 32);
      if (member == 0) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          float sum = 0.0f;
          for (int mem = 0; mem < active; ++mem) sum += sums[parity][slot * sharing + mem][j][lane];
          total[j] = sum;
        }
      }
      parity ^= 1;
    }
    if (member == 0) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int row = tile * kTileRows + g + (j >= 2 ? 8 : 0), tok = 2 * t + (j % 2);
        if (row < n && tok < m) store_out(out + int64_t(tok) * n + row, total[j]);
      }
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) total[j] = 0.0f;
  };

  // One K block: the block two ahead into `refill` (the buffer multiplied last), then `cur`
  // multiplied and promoted. False when the warp has no block left.
  Cursor use = start;
  auto step = [&](uint4 (&refill)[4], const uint4 (&cur)[4]) {
    if (!use.valid(num_tiles, num_kb)) return false;
    load_block(refill, ahead);
    ahead.advance(member, sharing, num_kb, tile_step);
    float block[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const __half* xk = x_row + use.kb * 128;
#pragma unroll
    for (int p = 0; p < 4; ++p) {  // piece p (fp8_stream.cuh): k16 steps 2p and 2p + 1
      const uint4 xv = *reinterpret_cast<const uint4*>(xk + piece_offset(t, p));
      const uint32_t a_lo = word_of(cur[p / 2], 2 * (p % 2)), a_hi = word_of(cur[p / 2], 2 * (p % 2) + 1);
      const uint32_t b_lo = word_of(cur[2 + p / 2], 2 * (p % 2)), b_hi = word_of(cur[2 + p / 2], 2 * (p % 2) + 1);
      mma_f16(block, e4m3x2_to_f16x2(a_lo), e4m3x2_to_f16x2(b_lo), e4m3x2_to_f16x2(a_lo >> 16),
              e4m3x2_to_f16x2(b_lo >> 16), xv.x, xv.y);
      mma_f16(block, e4m3x2_to_f16x2(a_hi), e4m3x2_to_f16x2(b_hi), e4m3x2_to_f16x2(a_hi >> 16),
              e4m3x2_to_f16x2(b_hi >> 16), xv.z, xv.w);
    }
    const float s = __ldg(w_scale + int64_t(use.tile * kTileRows / kFp8BlockSize) * num_kb + use.kb);
    const float s_lo = s * xe[tok_lo * num_kb + use.kb], s_hi = s * xe[tok_hi * num_kb + use.kb];
    total[0] = fmaf(block[0], s_lo, total[0]);
    total[1] = fmaf(block[1], s_hi, total[1]);
    total[2] = fmaf(block[2], s_lo, total[2]);
    total[3] = fmaf(block[3], s_hi, total[3]);
    if (use.kb + sharing >= num_kb) finish_tile(use.tile);
    use.advance(member, sharing, num_kb, tile_step);
    return true;
  };
  while (step(wc, wa) && step(wa, wb) && step(wb, wc)) {
  }
}

template <typename XT, typename OT>
cudaError_t launch_f16(const XT* x, const uint8_t* w, const float* w_scale, OT* out, int64_t m, int64_t n, int64_t k,
                       cudaStream_t stream) {
  if (!x || !w || !w_scale || !out || !fp8_gemv_f16_supported(m, n, k, x, w)) return cudaErrorInvalidValue;
  const auto kernel = fp8_gemv_f16_kernel<XT, OT>;
  F16Plan p;
  if (cudaError_t err = plan_f16(reinterpret_cast<const void*>(kernel), m, (n + kTileRows - 1) / kTileRows, k, 1, &p);
      err != cudaSuccess)
    return err;
  return launch_dependent(kernel, dim3(unsigned(p.grid)), dim3(kThreads), p.smem, stream, x, w, w_scale, out, int(m),
                          int(n), int(k), int(fp8_num_blocks(k)), p.sharing);
}

}  // namespace

bool fp8_gemv_f16_supported(int64_t m, int64_t n, int64_t k, const void* x, const void* w) {
  return m >= 1 && m <= kFp8GemvF16MaxTokens && n >= 1 && n <= INT32_MAX - kTileRows && k > 0 && k % 16 == 0 &&
         k <= INT32_MAX / 2 && staged_bytes(m, k) <= kSmemCap && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

cudaError_t launch_fp8_gemv_f16(const float* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream) {
  return launch_f16(x, w, w_scale, out, m, n, k, stream);
}
cudaError_t launch_fp8_gemv_f16(const uint16_t* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream) {
  return launch_f16(x, w, w_scale, out, m, n, k, stream);
}
cudaError_t launch_fp8_gemv_f16(const float* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream) {
  return launch_f16(x, w, w_scale, out, m, n, k, stream);
}
cudaError_t launch_fp8_gemv_f16(const uint16_t* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream) {
  return launch_f16(x, w, w_scale, out, m, n, k, stream);
}

}  // namespace troupe::kernels
