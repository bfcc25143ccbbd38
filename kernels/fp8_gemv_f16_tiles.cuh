#pragma once
// The f16 tensor-core FP8 GEMV (fp8_gemv_f16.hpp says what and why): the tile loop gemv_tiles, its
// staging helpers and launch plan, shared by the dense kernel (fp8_gemv_f16.cu) and the MoE
// experts' one-token kernel (moe_f16_gemv.cu) through an Out policy: where a tile's rows come from
// and where its sums go.
//
// Layout of one launch:
//   - a "tile" is 16 rows of W (one warp's mma A); tiles are dealt to the CTA's 8 warps in slots of
//     S warps (S = 8, 4, 2 or 1 sharing a tile, 8 / S tiles at once per CTA), the S warps of a slot
//     splitting the tile's K blocks (member j takes blocks j, j + S, ...); the CTA takes the slot
//     groups blockIdx.x, + gridDim.x, ...; the plan picks S by the loads on the busiest warp;
//   - x is staged in shared memory first, while the warp's first K blocks of W are in flight:
//     per token and K block the 128 values as f16 times 2^-e (e from the block's largest |x|) and
//     2^e as a float; a token row is padded by 16 bytes so the B reads of different tokens fall on
//     different banks;
//   - per K block a lane loads 64 bytes of W (fp8_stream.cuh's lo / hi pieces of rows g and g + 8),
//     issues the loads of the block kRing - 1 ahead (three by default; crossing into its next
//     tile), widens and runs 8 mma into a zeroed block sum, then adds block * w_scale * 2^e per
//     column to its total;
//   - c0, c1 hold row g for tokens 2t, 2t + 1, c2, c3 row g + 8; the members of a shared tile meet
//     at their slot's named barrier and member 0 adds their sums in member order (deterministic).
//
// Out policy: num_tiles(); base_row(tile, g), then weight_row(base, half): the weight row of the
// tile's row g (half 0) or g + 8 (half 1), clamped inside W; kHalvesShareScale: both in one 128-row scale block, scale_block(tile, 0) (else
// scale_block(tile, 1) for row g + 8's); store(tile, g, t, m, total): the finished sums (c0, c1:
// row g, tokens 2t, 2t + 1; c2, c3: row g + 8) to the output, for tokens < m.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include "kernels/dependent_launch.cuh"
#include "kernels/fp8_quant.hpp"
#include "kernels/fp8_stream.cuh"
#include "kernels/mma_sync.cuh"
#include "kernels/sm_count.hpp"

namespace troupe::kernels::f16_tiles {

using namespace fp8_stream;

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kTileRows = 16;
constexpr int kRowPad = 8;  // halves after each staged token row
constexpr size_t kSmemCap = 100 << 10;
constexpr int kDefaultRing = 4;  // gemv_tiles' comment says why
constexpr int kNormMaxTokens = 8;                // gemv_tiles' kNorm: m
constexpr int kNormMaxItems = 2 * kWarps * 4 * 32;  // and m * num_kb (its sums array)
// A staged x of kSmemCap bytes holds fewer items (256 bytes each) than that.
static_assert(kSmemCap / 256 <= kNormMaxItems, "the norm's item sums fit wherever x's staging does");

// x[k0 .. k0 + 16) as loaded (zeros when !valid), then as floats holding bf16 values (fp32 x
// rounded to bf16). k0 is a multiple of 16 and x 16-byte aligned.
struct Raw16 {
  uint4 v[2];
};
struct RawF16 {
  float4 v[4];
};
__device__ __forceinline__ void load_raw(const uint16_t* x, int64_t k0, bool valid, Raw16& r) {
  r.v[0] = r.v[1] = make_uint4(0, 0, 0, 0);
  if (valid) r.v[0] = __ldg(reinterpret_cast<const uint4*>(x + k0)), r.v[1] = __ldg(reinterpret_cast<const uint4*>(x + k0) + 1);
}
__device__ __forceinline__ void load_raw(const float* x, int64_t k0, bool valid, RawF16& r) {
#pragma unroll
  for (int q = 0; q < 4; ++q) r.v[q] = valid ? __ldg(reinterpret_cast<const float4*>(x + k0) + q) : make_float4(0, 0, 0, 0);
}
__device__ __forceinline__ void widen(const Raw16& r, float (&v)[16]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint32_t words[4] = {r.v[h].x, r.v[h].y, r.v[h].z, r.v[h].w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      v[8 * h + 2 * j] = __uint_as_float(words[j] << 16);
      v[8 * h + 2 * j + 1] = __uint_as_float(words[j] & 0xffff0000u);
    }
  }
}
__device__ __forceinline__ float bf16_rounded(float f) { return __bfloat162float(__float2bfloat16_rn(f)); }
// fp32 x as it is (the normed staging's input: rmsnorm reads fp32, and rounding x to bf16 before the
// norm would add 2^-9 a value).
__device__ __forceinline__ void widen_unrounded(const RawF16& r, float (&v)[16]) {
#pragma unroll
  for (int q = 0; q < 4; ++q) v[4 * q] = r.v[q].x, v[4 * q + 1] = r.v[q].y, v[4 * q + 2] = r.v[q].z, v[4 * q + 3] = r.v[q].w;
}
__device__ __forceinline__ void widen_unrounded(const Raw16& r, float (&v)[16]) { widen(r, v); }  // bf16: exact
__device__ __forceinline__ void widen(const RawF16& r, float (&v)[16]) {
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    v[4 * q] = bf16_rounded(r.v[q].x), v[4 * q + 1] = bf16_rounded(r.v[q].y);
    v[4 * q + 2] = bf16_rounded(r.v[q].z), v[4 * q + 3] = bf16_rounded(r.v[q].w);
  }
}
template <typename XT>
using RawOf = std::conditional_t<sizeof(XT) == 2, Raw16, RawF16>;

__device__ __forceinline__ uint32_t pack_f16x2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Where a warp is in its sequence of (tile, K block): the tiles of its slot in turn, in each the K
// blocks of its member. valid() is false past the last tile (or when the member has no block).
struct Cursor {
  int tile, kb;
  __device__ bool valid(int num_tiles, int num_kb) const { return tile < num_tiles && kb < num_kb; }
  __device__ void advance(int member, int sharing, int num_kb, int tile_step) {
    kb += sharing;
    if (kb >= num_kb) kb = member, tile += tile_step;
  }
};

__device__ __forceinline__ void store_out(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_out(uint16_t* p, float v) {
  *reinterpret_cast<__nv_bfloat16*>(p) = __float2bfloat16_rn(v);
}

// The row layout of the Out policies below: tile r holds rows 16 r .. 16 r + 15 of W (n rows).
struct SixteenRowTiles {
  static constexpr bool kHalvesShareScale = true;  // 16 rows never straddle a 128-row block
  int n;
  __device__ int num_tiles() const { return (n + kTileRows - 1) / kTileRows; }
  __device__ int base_row(int tile, int g) const { return tile * kTileRows + g; }
  __device__ int weight_row(int base, int half) const { return min(base + 8 * half, n - 1); }
  __device__ int64_t scale_block(int tile, int) const { return tile * kTileRows / kFp8BlockSize; }
};

// The Out policy of a plain product: the sums go to out[token * n + row], times `scale` when SCALED
// (the MoE kernel's 2^-64).
template <typename OT, bool SCALED>
struct RowTiles : SixteenRowTiles {
  OT* out;
  float scale;
  __device__ void store(int tile, int g, int t, int m, const float (&total)[4]) const {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int row = tile * kTileRows + g + (j >= 2 ? 8 : 0), tok = 2 * t + (j % 2);
      if (row < n && tok < m) store_out(out + int64_t(tok) * n + row, SCALED ? total[j] * scale : total[j]);
    }
  }
};

// The tiles [blockIdx.x * slots, out.num_tiles()) of W in steps of gridDim.x * slots, for m tokens
// of x (rows x_stride apart); sharing: warps per tile (8, 4, 2 or 1). Signals the dependent launch
// and loads its first weights before wait_for_prerequisites (the caller may have waited already).
// A warp with no K block returns early: no CTA-wide barrier may follow the call in such a launch.
// The dense kernel's arithmetic (row clamps, scale index, promotion) is written as its own loop
// was before this function, whose PTX (sm_90a, all four instantiations) this matches instruction for
// instruction: a first version that clamped the scale row and scaled the halves separately ran
// Llama-3-8B FP8's b1 step 3% slower (3.30 against 3.20 ms, one H200 run,
// bench/results/*2026-12-04_f16_tiles_shared_experiment*). Compare the PTX after changing it.
// Registers of the kernels that call it: the dense one caps them at 96, so two CTAs of 8 warps take
// three quarters of an SM's register file and leave room for the kernels before and after it in a
// decode step (programmatic dependent launch). At the compiler's 125 two CTAs filled the file; that
// alone was not what the Llama-3-8B FP8 b1 step lost beside the row kernel (3.97 ms at 96, 4.03 at
// 125, 3.54 on the row kernel: the shared-memory carveout was, kernels/smem_carveout.hpp), but the
// step that gained, 3.25 ms with the carveout, was measured at 96; in isolation 125 streamed 2-5%
// faster (o 0.66 against 0.63 of HBM). The MoE kernel, with its expert lookups and two scale rows
// per tile, spilled at 96 and takes 112 (none). A fourth ring buffer (one more K block in flight a
// warp, 16 registers) takes them to 112 and 128 (the MoE gate_up spills 4 bytes there), two CTAs
// filling the file; the steps gained all the same (one H200 run, go52): Llama-3-8B FP8 b1 3.187
// against 3.235 ms, R1's reduced shape 2.092 against 2.130 (bench/results/*2026-12-04_*ring*).
// With kNorm, x is RMS-normed on the way in (rmsnorm's formula, x * rsqrt(mean(x^2) + eps) *
// norm_weight): the staging multiplies each value by norm_weight and keeps each item's sum of
// squares (in `sums`, free until the loop below: m * num_kb <= kNormMaxItems), the token's sum is
// then added in item order (deterministic), and its rsqrt joins its blocks' 2^e, so the loop below
// is the plain one. Unlike rmsnorm then this kernel, x is not rounded to bf16 before the norm nor
// after it (x * w is rounded to f16 with its block's exponent: 3 more bits).
template <int kRing = 3, bool kNorm = false, typename XT, class Out>
__device__ __forceinline__ void gemv_tiles(const XT* __restrict__ x, int x_stride, const uint8_t* __restrict__ w,
                                           const float* __restrict__ w_scale, int m, int k, int num_kb, int sharing,
                                           const Out& out, const float* __restrict__ norm_weight = nullptr,
                                           float eps = 0.0f) {
  extern __shared__ uint4 smem[];
  __shared__ float sums[2][kWarps][4][32];
  const int row_halves = num_kb * 128 + kRowPad;
  __half* xs = reinterpret_cast<__half*>(smem);                       // [m][row_halves]
  float* xe = reinterpret_cast<float*>(xs + int64_t(m) * row_halves);  // [m][num_kb]: 2^e
  const int warp = int(threadIdx.x / 32), lane = int(threadIdx.x % 32), g = lane / 4, t = lane % 4;
  const int slots = kWarps / sharing, slot = warp / sharing, member = warp % sharing;
  const int num_tiles = out.num_tiles(), tile_step = int(gridDim.x) * slots;
  allow_dependents();  // the next kernel may become resident and start on its own weights
  // A warp's work: the tiles of its slot in turn, in each the K blocks of its member. Members past
  // the last K block (num_kb < sharing) have none and stay out of the slot's barriers.
  const int active = min(sharing, num_kb);
  const bool working = member < active;
  auto load_block = [&](uint4 (&d)[4], const Cursor& c) {
    if (!c.valid(num_tiles, num_kb)) return;
    const int row = out.base_row(c.tile, g);
    const int64_t kb0 = int64_t(c.kb) * kFp8BlockSize;
    load_w_piece<true>(w + int64_t(out.weight_row(row, 0)) * k, kb0, t, k, d[0], d[1]);
    load_w_piece<true>(w + int64_t(out.weight_row(row, 1)) * k, kb0, t, k, d[2], d[3]);
  };
  // kRing buffers in a ring (3 or 4), kRing - 1 K blocks in flight while one is multiplied; the
  // loop below turns the ring by naming, never by copying registers whose loads may still be in
  // flight. Each buffer in flight is 16 registers a thread (kRingRegisters says what a kernel caps).
  static_assert(kRing == 3 || kRing == 4, "ring of 3 or 4 buffers");
  uint4 wa[4], wb[4], wc[4], wd[4];
  const Cursor start{int(blockIdx.x) * slots + slot, member};
  Cursor ahead = start;
  // Weights are never written by a kernel, so the first blocks may load before x is ready.
  if (working) {
    load_block(wa, ahead);
    ahead.advance(member, sharing, num_kb, tile_step);
    load_block(wb, ahead);
    ahead.advance(member, sharing, num_kb, tile_step);
    if constexpr (kRing == 4) {
      load_block(wc, ahead);
      ahead.advance(member, sharing, num_kb, tile_step);
    }
  }
  wait_for_prerequisites();

  // Stage x: items (token, K block) of 8 lanes each, lane l's 16 values at 16 (l % 8); a warp takes
  // 4 items per pass and issues the loads of kBatch passes before it reduces any (the items' loads
  // are independent; done one by one they cost a round trip each, several microseconds at K 14336;
  // more passes at once do not fit the 96 registers).
  // The norm's weights take the registers of a second pass (kBatch 1: one pass covers 32 items, R1's
  // q_b at K 1,536 has 12 a token).
  constexpr int kBatch = kNorm ? 1 : 2;
  const int items = m * num_kb, quad = lane / 8, eighth = lane % 8;
  float* item_squares = &sums[0][0][0][0];  // kNorm: [items], until the loop below uses sums
  for (int base = warp * 4; base < items; base += kWarps * 4 * kBatch) {
    RawOf<XT> raw[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int item = base + b * kWarps * 4 + quad, tok = item / num_kb, kb = item % num_kb;
      const int64_t k0 = int64_t(kb) * kFp8BlockSize + 16 * eighth;
      load_raw(x + int64_t(min(tok, m - 1)) * x_stride, k0, item < items && k0 < k, raw[b]);
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int item = base + b * kWarps * 4 + quad, tok = item / num_kb, kb = item % num_kb;
      float v[16];
      if constexpr (kNorm) {
        widen_unrounded(raw[b], v);
      } else {
        widen(raw[b], v);
      }
      if constexpr (kNorm) {
        const int64_t k0 = int64_t(kb) * kFp8BlockSize + 16 * eighth;
        float square = 0.0f;
#pragma unroll
        for (int i = 0; i < 16; ++i) {
          square = fmaf(v[i], v[i], square);
          v[i] *= item < items && k0 + i < k ? __ldg(norm_weight + k0 + i) : 0.0f;
        }
#pragma unroll
        for (int offset = 4; offset > 0; offset /= 2) square += __shfl_xor_sync(0xffffffffu, square, offset);
        if (eighth == 0 && item < items) item_squares[item] = square;
      }
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
  if constexpr (kNorm) {  // each token's squares in item order, then its rsqrt joins its blocks' 2^e
    __shared__ float inv_rms[kNormMaxTokens];
    if (int(threadIdx.x) < m) {
      float total = 0.0f;
      for (int kb = 0; kb < num_kb; ++kb) total += item_squares[int(threadIdx.x) * num_kb + kb];
      inv_rms[threadIdx.x] = rsqrtf(total / float(k) + eps);
    }
    __syncthreads();
    for (int i = int(threadIdx.x); i < items; i += kThreads) xe[i] *= inv_rms[i / num_kb];
    __syncthreads();
  }
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
    if (member == 0) out.store(tile, g, t, m, total);
#pragma unroll
    for (int j = 0; j < 4; ++j) total[j] = 0.0f;
  };

  // One K block: the block kRing - 1 ahead into `refill` (the buffer multiplied last), then `cur`
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
    // Rows g (c0, c1) and g + 8 (c2, c3) take the scales of their 128-row blocks: one for both
    // unless the Out layout's halves come from different places.
    const float s = __ldg(w_scale + int64_t(out.scale_block(use.tile, 0)) * num_kb + use.kb);
    const float s_lo = s * xe[tok_lo * num_kb + use.kb], s_hi = s * xe[tok_hi * num_kb + use.kb];
    total[0] = fmaf(block[0], s_lo, total[0]);
    total[1] = fmaf(block[1], s_hi, total[1]);
    if constexpr (Out::kHalvesShareScale) {
      total[2] = fmaf(block[2], s_lo, total[2]);
      total[3] = fmaf(block[3], s_hi, total[3]);
    } else {
      const float s8 = __ldg(w_scale + int64_t(out.scale_block(use.tile, 1)) * num_kb + use.kb);
      total[2] = fmaf(block[2], s8 * xe[tok_lo * num_kb + use.kb], total[2]);
      total[3] = fmaf(block[3], s8 * xe[tok_hi * num_kb + use.kb], total[3]);
    }
    if (use.kb + sharing >= num_kb) finish_tile(use.tile);
    use.advance(member, sharing, num_kb, tile_step);
    return true;
  };
  if constexpr (kRing == 3) {
    while (step(wc, wa) && step(wa, wb) && step(wb, wc)) {
    }
  } else {
    while (step(wd, wa) && step(wa, wb) && step(wb, wc) && step(wc, wd)) {
    }
  }
}

// The registers a kernel running gemv_tiles<kRing> caps itself at: the comment on gemv_tiles says
// why 96 at three buffers; a fourth holds 16 more.
template <int kRing>
constexpr int kRingRegisters = kRing == 3 ? 96 : 112;

// The ring the decode kernels take (gemv_tiles' kRing); TROUPE_GEMV_RING=3|4 overrides it for A/B
// runs. Read once per process.
inline int ring_buffers() {
  static const int ring = [] {
    const char* env = std::getenv("TROUPE_GEMV_RING");
    return env && std::atoi(env) == 4 ? 4 : env && std::atoi(env) == 3 ? 3 : kDefaultRing;
  }();
  return ring;
}

inline size_t staged_bytes(int64_t m, int64_t k) {
  const int64_t num_kb = fp8_num_blocks(k);
  return size_t(m * (num_kb * 128 + kRowPad) * 2 + m * num_kb * 4);
}

struct F16Plan {
  int sharing = 8, grid = 1;
  size_t smem = 0;
};

// The sharing with the fewest K blocks on the busiest warp: rounds of the CTAs resident at once
// (over `share` launches side by side: the MoE kernel's experts) times the blocks a member takes
// per tile; among equals the last met (fewer warps a tile): R1's o and dense down then run 4 warps a
// tile in one round on 224 of the 264 CTA slots instead of 8 in two rounds (the second on 184), its
// MoE down 1 warp a tile, Llama's q/k/v 4; one H200 run: R1's reduced b1 step 2.032 against 2.063
// ms, Llama-3-8B FP8 b1 3.100 / 3.102 against 3.156 / 3.117 (TROUPE_F16_TIES=first, the earlier
// rule, for A/B runs; records *_2026-12-04_ties_*).
inline cudaError_t plan_f16(const void* kernel, int64_t m, int64_t tiles, int64_t k, int64_t share, F16Plan* plan) {
  int num_sms = 1, ctas = 0;
  if (cudaError_t err = current_sm_count(&num_sms); err != cudaSuccess) return err;
  const size_t smem = staged_bytes(m, k);
  if (cudaError_t err = resident_blocks_per_sm(kernel, kThreads, smem, &ctas, kSmemCap); err != cudaSuccess) return err;
  if (ctas <= 0) return cudaErrorInvalidConfiguration;
  const int64_t num_kb = fp8_num_blocks(k);
  // Two CTAs per SM (the register comment above), split over the launches sharing the GPU.
  const int64_t at_once = std::max<int64_t>(1, int64_t(std::min(ctas, 2)) * num_sms / std::max<int64_t>(1, share));
  // Shared tiles' barriers and reductions are not counted: weighing each as 4 K blocks changed
  // nothing measurable, and owned tiles everywhere (S = 1) halved Llama-3-8B FP8's b1 step.
  static const bool later_ties = [] {
    const char* env = std::getenv("TROUPE_F16_TIES");
    return !(env && std::string_view(env) == "first");
  }();
  // TROUPE_F16_SHARING=8|4|2|1 forces the warps a tile for every launch (a diagnostic for A/B runs,
  // read once: e.g. the MoE bench's experts, the only f16 launches of its layer).
  static const int forced = [] {
    const char* env = std::getenv("TROUPE_F16_SHARING");
    const int v = env ? std::atoi(env) : 0;
    return v == 8 || v == 4 || v == 2 || v == 1 ? v : 0;
  }();
  int64_t best_cost = INT64_MAX;
  for (int sharing : {8, 4, 2, 1}) {
    if (forced && sharing != forced) continue;
    const int64_t groups = (tiles + kWarps / sharing - 1) / (kWarps / sharing);
    const int64_t cost = (groups + at_once - 1) / at_once * ((num_kb + sharing - 1) / sharing);
    if (cost < best_cost || (later_ties && cost == best_cost)) {
      best_cost = cost;
      *plan = {sharing, int(std::min(groups, at_once)), smem};
    }
  }
  return cudaSuccess;
}


}  // namespace troupe::kernels::f16_tiles
