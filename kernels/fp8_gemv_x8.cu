#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <map>
#include <tuple>

#include "kernels/dependent_launch.cuh"
#include "kernels/fp8_gemv_x8.hpp"
#include "kernels/fp8_quant.hpp"
#include "kernels/fp8_stream.cuh"
#include "kernels/sm_count.hpp"

// Layout of one launch: a CTA is 8 warps = 128 rows of W (one w_scale row) x a range of K blocks
// (a split; splits meet in a workspace, summed in split order by a second kernel, so results do
// not depend on timing). Tokens run in tiles of 8 (the mma's N).
//   0. Each warp puts its first kAhead K blocks of W in flight (weights are never written by a
//      kernel, so they may load before the kernel this one depends on has finished).
//   1. The CTA quantizes x of its K range into shared memory, a warp per (token, K block): lane l
//      takes channels [4 l, 4 l + 4), a warp max gives amax, then e4m3(x * 448 / amax) and the
//      scale amax / 448, as fp8_quant.cu does (bit-identical). Padding tokens (up to the tile's 8)
//      are zero bytes with zero scales.
//   2. Each warp streams its 16 rows: thread (g = lane / 4, t = lane % 4) loads, per K block, the 16
//      bytes at 16 t and at 64 + 16 t of rows g and g + 8 (fp8_stream.cuh's offsets: each load
//      instruction covers whole sectors) and reads x of token g of each token tile at the same
//      offsets. Inside an mma the order of K does not matter while A and B agree, so word j of a
//      16-byte piece goes to slot {4t..4t+3} (j even) or {16+4t..} (j odd) of k32 step j / 2:
//      four mmas a K block, no conversion. The block's sum is promoted with w_scale x x_scale.
//   Shared memory per K block: tokens x 128 bytes (chunk c of token r at chunk c ^ 4 (r & 1): a
//   quarter warp's 16-byte reads, tokens 2q and 2q + 1, land on distinct banks), then the scales.
namespace troupe::kernels {
namespace {

using fp8_stream::load_stream16;
using fp8_stream::mma_e4m3;

constexpr int kWarps = 8, kThreads = kWarps * 32, kRows = 128;  // kRows = kFp8BlockSize
constexpr int kAhead = 3;                                       // K blocks in flight per warp
constexpr size_t kSmemCap = 96 << 10;                           // two CTAs per SM

__device__ __forceinline__ float load_x(const float* p) { return *p; }
__device__ __forceinline__ float load_x(const uint16_t* p) { return __uint_as_float(uint32_t(*p) << 16); }
// Four consecutive values (16-byte aligned fp32, 8-byte aligned bf16).
__device__ __forceinline__ float4 load_x4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 load_x4(const uint16_t* p) {
  const uint2 v = *reinterpret_cast<const uint2*>(p);
  return make_float4(__uint_as_float(v.x << 16), __uint_as_float(v.x & 0xffff0000u), __uint_as_float(v.y << 16),
                     __uint_as_float(v.y & 0xffff0000u));
}

__device__ __forceinline__ void store_out(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_out(uint16_t* p, float v) {
  *reinterpret_cast<__nv_bfloat16*>(p) = __float2bfloat16_rn(v);
}

__device__ __forceinline__ uint32_t e4m3(float v) {
  return uint32_t(__nv_cvt_float_to_fp8(v, __NV_SATFINITE, __NV_E4M3));
}

// Byte offset of 16-byte chunk c of token row r within a K block's x.
__device__ __forceinline__ int x_chunk(int r, int c) { return r * 128 + ((c ^ ((r & 1) << 2)) << 4); }

template <int MT, typename XT, typename OT>
__global__ void __launch_bounds__(kThreads, MT <= 4 ? 2 : 1)
    fp8_gemv_x8_kernel(const XT* __restrict__ x, const uint8_t* __restrict__ w, const float* __restrict__ w_scale,
                       OT* __restrict__ out, float* __restrict__ partial, int m, int n, int k, int num_kb,
                       int kb_per_split) {
  constexpr int kTokens = MT * 8, kBlockBytes = kTokens * 128;
  extern __shared__ __align__(16) uint8_t smem[];  // [kb_local][kTokens][128] bytes, then [kb_local][kTokens] scales
  const int nb = int(blockIdx.x), split = int(blockIdx.y);
  const int kb0 = split * kb_per_split, nkb = min(num_kb, kb0 + kb_per_split) - kb0;
  float* const scales = reinterpret_cast<float*>(smem + size_t(nkb) * kBlockBytes);
  allow_dependents();

  // 0.
  const int warp = int(threadIdx.x / 32), lane = int(threadIdx.x % 32), g = lane / 4, t = lane % 4;
  const int row0 = nb * kRows + warp * 16;
  const uint8_t* row_a = w + int64_t(min(row0 + g, n - 1)) * k;
  const uint8_t* row_b = w + int64_t(min(row0 + g + 8, n - 1)) * k;
  uint4 wq[kAhead + 1][4];  // per K block: {row g lo, row g hi, row g + 8 lo, row g + 8 hi}
  auto load_block = [&](uint4 (&d)[4], int kb) {
    const int64_t lo = int64_t(kb) * kFp8BlockSize + 16 * t, hi = lo + 64;
    d[0] = load_stream16(row_a + lo, lo < k);
    d[1] = load_stream16(row_a + hi, hi < k);
    d[2] = load_stream16(row_b + lo, lo < k);
    d[3] = load_stream16(row_b + hi, hi < k);
  };
  const bool has_rows = row0 < n;
  if (has_rows) {
#pragma unroll
    for (int j = 0; j < kAhead; ++j)
      if (j < nkb) load_block(wq[j], kb0 + j);
  }
  wait_for_prerequisites();  // x comes from the kernel before

  // 1.
  for (int unit = warp; unit < nkb * m; unit += kWarps) {
    const int lk = unit / m, tok = unit % m;
    const int64_t c0 = int64_t(kb0 + lk) * kFp8BlockSize + 4 * lane;
    const XT* src = x + int64_t(tok) * k + c0;
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (c0 + 4 <= k) {
      v = load_x4(src);
    } else {
      v.x = c0 < k ? load_x(src) : 0.0f;
      v.y = c0 + 1 < k ? load_x(src + 1) : 0.0f;
      v.z = c0 + 2 < k ? load_x(src + 2) : 0.0f;
    }
    float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
#pragma unroll
    for (int o = 16; o > 0; o /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    amax = fmaxf(amax, kFp8MinAmax);
    const float inv = 448.0f / amax;
    const uint32_t word = e4m3(v.x * inv) | (e4m3(v.y * inv) << 8) | (e4m3(v.z * inv) << 16) | (e4m3(v.w * inv) << 24);
    *reinterpret_cast<uint32_t*>(smem + lk * kBlockBytes + x_chunk(tok, lane / 4) + 4 * (lane % 4)) = word;
    if (lane == 0) scales[lk * kTokens + tok] = amax / 448.0f;
  }
  const int pad = kTokens - m;  // padding tokens: zero bytes, zero scales
  for (int i = int(threadIdx.x); i < nkb * pad * 8; i += kThreads) {
    const int lk = i / (pad * 8), r = m + (i / 8) % pad;
    *reinterpret_cast<uint4*>(smem + lk * kBlockBytes + r * 128 + (i % 8) * 16) = make_uint4(0, 0, 0, 0);
  }
  for (int i = int(threadIdx.x); i < nkb * pad; i += kThreads) scales[(i / pad) * kTokens + m + i % pad] = 0.0f;
  __syncthreads();
  if (!has_rows) return;  // no barrier follows

  // 2.
  float total[MT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) total[mt][0] = total[mt][1] = total[mt][2] = total[mt][3] = 0.0f;
  const float* scale_row = w_scale + int64_t(nb) * num_kb + kb0;
  for (int i = 0; i < nkb; ++i) {
    if (i + kAhead < nkb) load_block(wq[kAhead], kb0 + i + kAhead);
    const float ws = __ldg(scale_row + i);
    const uint8_t* xb = smem + i * kBlockBytes;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      const int r = mt * 8 + g;
      const uint4 xlo = *reinterpret_cast<const uint4*>(xb + x_chunk(r, t));
      const uint4 xhi = *reinterpret_cast<const uint4*>(xb + x_chunk(r, 4 + t));
      float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      mma_e4m3(part, {wq[0][0].x, wq[0][2].x, wq[0][0].y, wq[0][2].y}, xlo.x, xlo.y);
      mma_e4m3(part, {wq[0][0].z, wq[0][2].z, wq[0][0].w, wq[0][2].w}, xlo.z, xlo.w);
      mma_e4m3(part, {wq[0][1].x, wq[0][3].x, wq[0][1].y, wq[0][3].y}, xhi.x, xhi.y);
      mma_e4m3(part, {wq[0][1].z, wq[0][3].z, wq[0][1].w, wq[0][3].w}, xhi.z, xhi.w);
      const float2 xs = *reinterpret_cast<const float2*>(scales + i * kTokens + mt * 8 + 2 * t);
      const float s0 = ws * xs.x, s1 = ws * xs.y;
      total[mt][0] = fmaf(part[0], s0, total[mt][0]);
      total[mt][1] = fmaf(part[1], s1, total[mt][1]);
      total[mt][2] = fmaf(part[2], s0, total[mt][2]);
      total[mt][3] = fmaf(part[3], s1, total[mt][3]);
    }
#pragma unroll
    for (int j = 0; j < kAhead; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) wq[j][q] = wq[j + 1][q];
  }

  // c0, c1: row g, tokens 2t, 2t + 1; c2, c3: row g + 8.
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int row = row0 + g + (j >= 2 ? 8 : 0), tok = mt * 8 + 2 * t + (j % 2);
      if (row >= n || tok >= m) continue;
      if (partial) {
        partial[(int64_t(split) * m + tok) * n + row] = total[mt][j];
      } else {
        store_out(out + int64_t(tok) * n + row, total[mt][j]);
      }
    }
}

// out[i] = sum over splits of partial[s][i], in split order.
template <typename OT>
__global__ void sum_splits_kernel(const float* __restrict__ partial, OT* __restrict__ out, int64_t count, int splits) {
  allow_dependents();
  wait_for_prerequisites();
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  float sum = 0.0f;
  for (int s = 0; s < splits; ++s) sum += partial[int64_t(s) * count + i];
  store_out(out + i, sum);
}

struct Plan {
  int token_tiles = 1, splits = 1, kb_per_split = 1;
  size_t smem = 0, workspace = 0;
};

int token_tiles_of(int64_t m) {
  const int64_t tiles = (m + 7) / 8;
  return tiles <= 2 ? int(tiles) : tiles <= 4 ? 4 : 8;
}

// The K split: the CTAs fill whole rounds of the SMs' resident CTAs as nearly as they can (a
// round is as long as one CTA; a last round a quarter full costs a whole one), without more
// splits than needed for that (each adds a partial sum per output) and within the staged x's
// shared memory.
cudaError_t plan(int64_t m, int64_t n, int64_t k, Plan* out) {
  int num_sms = 1;
  if (cudaError_t err = current_sm_count(&num_sms); err != cudaSuccess) return err;
  Plan p;
  p.token_tiles = token_tiles_of(m);
  const int64_t tokens = int64_t(p.token_tiles) * 8;
  const int64_t row_blocks = (n + kRows - 1) / kRows, num_kb = fp8_num_blocks(k);
  const int64_t block_bytes = tokens * (128 + 4);
  const int64_t kb_cap = std::max<int64_t>(1, int64_t(kSmemCap) / block_bytes);
  const int64_t slots = int64_t(p.token_tiles <= 4 ? 2 : 1) * num_sms;
  double best_eff = -1.0;
  int64_t best_kbs = num_kb;
  for (int64_t s = 1; s <= std::max<int64_t>(1, std::min<int64_t>(64, num_kb)); ++s) {
    const int64_t kbs = std::min((num_kb + s - 1) / s, kb_cap);
    const int64_t splits = (num_kb + kbs - 1) / kbs, ctas = row_blocks * splits;
    const int64_t rounds = (ctas + slots - 1) / slots;
    // Work a CTA does is proportional to kbs; the launch takes rounds x kbs.
    const double eff = double(num_kb * row_blocks) / double(rounds * kbs * slots);
    if (eff > best_eff + 0.02) best_eff = eff, best_kbs = kbs;
  }
  p.kb_per_split = int(best_kbs);
  const int64_t splits = (num_kb + best_kbs - 1) / best_kbs;
  if (splits > 65535 || row_blocks > INT32_MAX) return cudaErrorInvalidValue;
  p.splits = int(splits);
  p.smem = size_t(best_kbs * block_bytes);
  p.workspace = splits > 1 ? size_t(splits * m * n) * sizeof(float) : 0;
  *out = p;
  return cudaSuccess;
}

template <typename XT, typename OT>
cudaError_t launch(const XT* x, const uint8_t* w, const float* w_scale, OT* out, int64_t m, int64_t n, int64_t k,
                   void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (m == 0) return cudaSuccess;
  if (m < 0 || m > kFp8GemvX8MaxTokens || !w_scale || !out || !fp8_gemv_x8_supported(m, n, k, x, w))
    return cudaErrorInvalidValue;
  Plan p;
  if (cudaError_t err = plan(m, n, k, &p); err != cudaSuccess) return err;
  if (p.workspace > 0 && (!workspace || workspace_bytes < p.workspace)) return cudaErrorInvalidValue;
  float* partial = p.workspace > 0 ? static_cast<float*>(workspace) : nullptr;
  const dim3 grid{unsigned((n + kRows - 1) / kRows), unsigned(p.splits)}, block{unsigned(kThreads)};
  const int mi = int(m), ni = int(n), ki = int(k), num_kb = int(fp8_num_blocks(k));
  auto run = [&](auto kernel) -> cudaError_t {
    if (p.smem > (48 << 10)) {
      if (cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kSmemCap));
          err != cudaSuccess)
        return err;
    }
    return launch_dependent(kernel, grid, block, p.smem, stream, x, w, w_scale, out, partial, mi, ni, ki, num_kb,
                            p.kb_per_split);
  };
  cudaError_t err = cudaSuccess;
  switch (p.token_tiles) {
    case 1: err = run(fp8_gemv_x8_kernel<1, XT, OT>); break;
    case 2: err = run(fp8_gemv_x8_kernel<2, XT, OT>); break;
    case 4: err = run(fp8_gemv_x8_kernel<4, XT, OT>); break;
    default: err = run(fp8_gemv_x8_kernel<8, XT, OT>); break;
  }
  if (err != cudaSuccess || !partial) return err;
  const int64_t count = m * n;
  return launch_dependent(sum_splits_kernel<OT>, dim3(unsigned((count + 255) / 256)), dim3(256), 0, stream,
                          static_cast<const float*>(partial), out, count, p.splits);
}

}  // namespace

bool fp8_gemv_x8_supported(int64_t m, int64_t n, int64_t k, const void* x, const void* w) {
  return m >= 0 && m <= kFp8GemvX8MaxTokens && n > 0 && n <= INT32_MAX - kRows && k > 0 && k % 16 == 0 &&
         k <= INT32_MAX - 2 * kFp8BlockSize && x && w && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

size_t fp8_gemv_x8_workspace_bytes(int64_t m, int64_t n, int64_t k) {
  if (m <= 0 || m > kFp8GemvX8MaxTokens || n <= 0 || k <= 0) return 0;
  Plan p;
  return plan(m, n, k, &p) == cudaSuccess ? p.workspace : 0;
}

cudaError_t launch_fp8_gemv_x8(const float* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                               int64_t n, int64_t k, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return launch(x, w, w_scale, out, m, n, k, workspace, workspace_bytes, stream);
}
cudaError_t launch_fp8_gemv_x8(const uint16_t* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                               int64_t n, int64_t k, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return launch(x, w, w_scale, out, m, n, k, workspace, workspace_bytes, stream);
}
cudaError_t launch_fp8_gemv_x8(const float* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t m,
                               int64_t n, int64_t k, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return launch(x, w, w_scale, out, m, n, k, workspace, workspace_bytes, stream);
}
cudaError_t launch_fp8_gemv_x8(const uint16_t* x, const uint8_t* w, const float* w_scale, uint16_t* out,
                               int64_t m, int64_t n, int64_t k, void* workspace, size_t workspace_bytes,
                               cudaStream_t stream) {
  return launch(x, w, w_scale, out, m, n, k, workspace, workspace_bytes, stream);
}

}  // namespace troupe::kernels
