#include <cuda_bf16.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/dependent_launch.cuh"
#include "kernels/fp8_block_gemm.hpp"
#include "kernels/sm_count.hpp"
#include "kernels/fp8_gemv_f16.hpp"
#include "kernels/fp8_gemv_rows.hpp"
#include "kernels/fp8_quant.hpp"
#include "kernels/fp8_stream.cuh"

// Both kernels feed tensor cores through mma.sync and use one trick: inside an MMA the order of
// the K elements does not matter as long as A and B agree. So each thread loads the bytes of W
// (and x) it needs contiguously and the fragment "slots" are mapped onto them:
//   bf16 m16n8k16 (decode): thread (g = lane / 4, t = lane % 4) takes 32 bytes of each K block of
//     its rows, in two 16-byte halves that keep a warp's loads on whole sectors, and feeds them 4
//     at a time to slots {2t, 2t+1, 2t+8, 2t+9} (kernels/fp8_stream.cuh has the offsets);
//   e4m3 m16n8k32 (prefill): at k32 step s, slots {4t..4t+3, 16+4t..16+4t+3} from bytes
//     32 s + 8 t + {0..7}.
namespace troupe::kernels {
namespace {

using namespace fp8_stream;

// ---------------------------------------------------------------------------------------------
// Shared pieces.

__device__ __forceinline__ void store_out(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_out(uint16_t* p, float v) {
  *reinterpret_cast<__nv_bfloat16*>(p) = __float2bfloat16_rn(v);
}

// ---------------------------------------------------------------------------------------------
// Decode: one CTA = 8 warps = 128 rows of W (one scale row) x a range of K blocks (a split).
// The CTA first stages x of its K range for all (padded) tokens in shared memory as bf16 times
// 2^64; each warp then streams its 16 rows, two K blocks ahead in registers, converts e4m3 to
// bf16 times 2^-112 (cvt to f16, whose exponent field is moved into bf16's: exact, and never
// subnormal) and runs mma m16n8k16 with W as A (16 rows) and x as B (8 tokens). The products
// are xw 2^-48, so neither tiny x nor tiny w leave fp32's normal range; the promotion multiplies
// by w_scale 2^48.

constexpr int kGemvWarps = 8;
constexpr int kGemvThreads = kGemvWarps * 32;
constexpr int kGemvRows = 128;           // = kFp8BlockSize: one w_scale row per CTA
constexpr int kChunksPerRow = 17;        // 16-byte chunks per staged token row (16 + 1 pad)
constexpr size_t kGemvSmemCap = 96 << 10;  // two CTAs per SM
constexpr float kXShift = 18446744073709551616.0f;  // 2^64
constexpr float kPromoteShift = 281474976710656.0f;  // 2^48 = 2^112 / 2^64

// The physical chunk of logical chunk c (8 bf16 of a token row): with the pad this keeps the
// 16-byte B-fragment reads of a quarter warp on distinct banks.
__device__ __forceinline__ int swizzle(int c) { return c ^ (((c >> 3) & 1) << 1); }

__device__ __forceinline__ void load_x8(const float* x, int64_t k0, int64_t k, bool vec, float (&v)[8]) {
  if (vec && k0 + 8 <= k) {
    const float4 a = __ldg(reinterpret_cast<const float4*>(x + k0)), b = __ldg(reinterpret_cast<const float4*>(x + k0) + 1);
    v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    return;
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] = k0 + j < k ? __ldg(x + k0 + j) : 0.0f;
}
__device__ __forceinline__ void load_x8(const uint16_t* x, int64_t k0, int64_t k, bool vec, float (&v)[8]) {
  if (vec && k0 + 8 <= k) {
    const uint4 a = __ldg(reinterpret_cast<const uint4*>(x + k0));
    const uint32_t words[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      v[2 * j] = __uint_as_float(words[j] << 16);
      v[2 * j + 1] = __uint_as_float(words[j] & 0xffff0000u);
    }
    return;
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] = k0 + j < k ? __uint_as_float(uint32_t(__ldg(x + k0 + j)) << 16) : 0.0f;
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 p = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&p);
}

// MT: token tiles of 8; VEC: 16-byte weight loads (k % 16 == 0, w aligned).
template <int MT, bool VEC, typename XT, typename OT>
__global__ void __launch_bounds__(kGemvThreads, MT <= 4 ? 2 : 1)
    fp8_gemv_kernel(const XT* __restrict__ x, const uint8_t* __restrict__ w, const float* __restrict__ w_scale,
                    OT* __restrict__ out, float* __restrict__ partial, int m, int n, int64_t k, int num_kb,
                    int kb_per_split, bool x_vec) {
  constexpr int kTokens = MT * 8;
  extern __shared__ uint4 x_smem[];  // [kb_local][kTokens][kChunksPerRow]
  const int nb = int(blockIdx.x), split = int(blockIdx.y);
  const int kb0 = split * kb_per_split, nkb = min(num_kb, kb0 + kb_per_split) - kb0;
  allow_dependents();  // the next kernel may become resident and start on its own weights

  // 0. The warp's first two K blocks of W are in flight before anything else: weights are never
  // written by a kernel, so they may be read before the kernels this one depends on finish (the
  // launch is a programmatic dependent one), and their latency overlaps the staging of x.
  const int warp = int(threadIdx.x / 32), lane = int(threadIdx.x % 32), g = lane / 4, t = lane % 4;
  const int row0 = nb * kGemvRows + warp * 16;
  const uint8_t* row_a = w + int64_t(min(row0 + g, n - 1)) * k;
  const uint8_t* row_b = w + int64_t(min(row0 + g + 8, n - 1)) * k;
  uint4 w0[4], w1[4], w2[4];  // K blocks i, i + 1, i + 2: {a lo, a hi, b lo, b hi}
  auto load_block = [&](uint4 (&d)[4], int kb) {
    const int64_t kb0 = int64_t(kb) * kFp8BlockSize;
    load_w_piece<VEC>(row_a, kb0, t, k, d[0], d[1]);
    load_w_piece<VEC>(row_b, kb0, t, k, d[2], d[3]);
  };
  if (row0 < n) {
    load_block(w0, kb0);
    if (nkb > 1) load_block(w1, kb0 + 1);
  }
  wait_for_prerequisites();  // x comes from the kernel before

  // 1. Stage x of the K range: bf16 * 2^64, zeros past m and k.
  const int num_chunks = nkb * kTokens * 16;
  for (int i = int(threadIdx.x); i < num_chunks; i += kGemvThreads) {
    const int c = i % 16, tok = (i / 16) % kTokens, lk = i / (16 * kTokens);
    float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (tok < m) load_x8(x + int64_t(tok) * k, int64_t(kb0 + lk) * kFp8BlockSize + 8 * c, k, x_vec, v);
    uint4 packed;
    packed.x = pack_bf16x2(v[0] * kXShift, v[1] * kXShift);
    packed.y = pack_bf16x2(v[2] * kXShift, v[3] * kXShift);
    packed.z = pack_bf16x2(v[4] * kXShift, v[5] * kXShift);
    packed.w = pack_bf16x2(v[6] * kXShift, v[7] * kXShift);
    x_smem[(lk * kTokens + tok) * kChunksPerRow + swizzle(c)] = packed;
  }
  __syncthreads();

  // 2. Stream the warp's 16 rows.
  if (row0 >= n) return;  // no barrier follows

  float total[MT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) total[mt][0] = total[mt][1] = total[mt][2] = total[mt][3] = 0.0f;

  const float* scale_row = w_scale + int64_t(nb) * num_kb + kb0;

  for (int i = 0; i < nkb; ++i) {
    if (i + 2 < nkb) load_block(w2, kb0 + i + 2);
    float block[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) block[mt][0] = block[mt][1] = block[mt][2] = block[mt][3] = 0.0f;
    const uint4* xk = x_smem + i * kTokens * kChunksPerRow;
#pragma unroll
    for (int p = 0; p < 4; ++p) {  // piece p (fp8_stream.cuh): k16 steps 2p and 2p + 1
      const uint32_t a_lo = word_of(w0[p / 2], 2 * (p % 2)), a_hi = word_of(w0[p / 2], 2 * (p % 2) + 1);
      const uint32_t b_lo = word_of(w0[2 + p / 2], 2 * (p % 2)), b_hi = word_of(w0[2 + p / 2], 2 * (p % 2) + 1);
      const uint32_t s0a0 = e4m3x2_to_bf16x2_shifted(a_lo), s0a2 = e4m3x2_to_bf16x2_shifted(a_lo >> 16);
      const uint32_t s0a1 = e4m3x2_to_bf16x2_shifted(b_lo), s0a3 = e4m3x2_to_bf16x2_shifted(b_lo >> 16);
      const uint32_t s1a0 = e4m3x2_to_bf16x2_shifted(a_hi), s1a2 = e4m3x2_to_bf16x2_shifted(a_hi >> 16);
      const uint32_t s1a1 = e4m3x2_to_bf16x2_shifted(b_hi), s1a3 = e4m3x2_to_bf16x2_shifted(b_hi >> 16);
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        const uint4 xv = xk[(mt * 8 + g) * kChunksPerRow + swizzle(piece_offset(t, p) / 8)];
        mma_bf16(block[mt], s0a0, s0a1, s0a2, s0a3, xv.x, xv.y);
        mma_bf16(block[mt], s1a0, s1a1, s1a2, s1a3, xv.z, xv.w);
      }
    }
    const float s = __ldg(scale_row + i) * kPromoteShift;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int j = 0; j < 4; ++j) total[mt][j] = fmaf(block[mt][j], s, total[mt][j]);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      w0[j] = w1[j];
      w1[j] = w2[j];
    }
  }

  // 3. c0, c1: row g, tokens 2t, 2t + 1; c2, c3: row g + 8.
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
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

struct GemvPlan {
  int token_tiles = 1, splits = 1, kb_per_split = 1;
  size_t smem = 0, workspace = 0;
};

cudaError_t plan_gemv(int64_t m, int64_t n, int64_t k, GemvPlan* plan) {
  int num_sms = 1;
  if (cudaError_t err = current_sm_count(&num_sms); err != cudaSuccess) return err;
  GemvPlan p;
  // The instantiated tile counts (launch_gemv): 1, 2, 4 or 8 tiles of 8 tokens. The staged x is
  // sized for the instance's tiles, not m's (3 tiles run as 4).
  const int64_t tiles = (m + 7) / 8;
  p.token_tiles = tiles <= 2 ? int(tiles) : tiles <= 4 ? 4 : 8;
  const int64_t row_blocks = (n + kGemvRows - 1) / kGemvRows, num_kb = fp8_num_blocks(k);
  const int64_t block_bytes = int64_t(p.token_tiles) * 8 * kChunksPerRow * 16;  // staged x per K block
  const int64_t kb_cap = std::max<int64_t>(1, int64_t(kGemvSmemCap) / block_bytes);
  // Two CTAs per SM: split K until the grid fills them, at most down to 2 blocks per split.
  const int64_t target = 2 * int64_t(std::max(num_sms, 1));
  int64_t splits = std::max<int64_t>((target + row_blocks - 1) / row_blocks, (num_kb + kb_cap - 1) / kb_cap);
  splits = std::min(splits, std::max<int64_t>(1, num_kb / 2));
  int64_t kb_per_split = (num_kb + splits - 1) / splits;
  kb_per_split = std::min(kb_per_split, kb_cap);
  splits = (num_kb + kb_per_split - 1) / kb_per_split;
  if (splits > 65535 || row_blocks > INT32_MAX) return cudaErrorInvalidValue;
  p.splits = int(splits);
  p.kb_per_split = int(kb_per_split);
  p.smem = size_t(kb_per_split * block_bytes);
  p.workspace = splits > 1 ? size_t(splits * m * n) * sizeof(float) : 0;
  *plan = p;
  return cudaSuccess;
}

template <int MT, typename XT, typename OT>
cudaError_t launch_gemv_tiles(bool vec, const GemvPlan& p, dim3 grid, const XT* x, const uint8_t* w,
                              const float* w_scale, OT* out, float* partial, int m, int n, int64_t k, int num_kb,
                              bool x_vec, cudaStream_t stream) {
  const auto kernel = vec ? fp8_gemv_kernel<MT, true, XT, OT> : fp8_gemv_kernel<MT, false, XT, OT>;
  if (p.smem > (48 << 10)) {
    if (cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(p.smem));
        err != cudaSuccess)
      return err;
  }
  return launch_dependent(kernel, grid, dim3(kGemvThreads), p.smem, stream, x, w, w_scale, out, partial, m, n, k, num_kb,
                          p.kb_per_split, x_vec);
}

// Up to kFp8GemvF16MaxTokens tokens take the f16 tensor-core kernel (fp8_gemv_f16.hpp) where it
// takes the shape, one token next the row-streaming kernel (fp8_gemv_rows.hpp), the rest this
// file's bf16 one. TROUPE_FP8_GEMV_KERNEL=rows or =tiles starts the choice lower, a diagnostic for
// A/B runs (read at each call, so a benchmark can time them in one process).
enum class SmallKernel { f16, rows, tiles };
SmallKernel small_kernel_choice() {
  const char* env = std::getenv("TROUPE_FP8_GEMV_KERNEL");
  if (env && std::strcmp(env, "rows") == 0) return SmallKernel::rows;
  if (env && std::strcmp(env, "tiles") == 0) return SmallKernel::tiles;
  return SmallKernel::f16;
}

}  // namespace

bool fp8_gemv_runs_f16(int64_t m, int64_t n, int64_t k, const void* x, const void* w) {
  // Fewer 16-row tiles than SMs (R1's q_a, kv_a) leave the f16 kernel's grid part empty, where the
  // row kernel spreads rows over every warp and the tile kernel splits K: on the H200 q_a streamed
  // at 0.18 of HBM against 0.23 (one token) and 0.14 against 0.20 (8 tokens), kv_a at 0.07 against
  // 0.11 and 0.08 against 0.10. One token over rows shorter than 1,024 bytes likewise (R1's kv_b,
  // K = 512: 0.28 against 0.37; at 8 tokens the f16 kernel led, 0.28 against 0.25).
  int num_sms = 1;
  if (current_sm_count(&num_sms) != cudaSuccess) return false;
  const bool few_tiles = n < 16 * int64_t(num_sms) || (m == 1 && k < 1024);
  return small_kernel_choice() == SmallKernel::f16 && !few_tiles && fp8_gemv_f16_supported(m, n, k, x, w);
}

namespace {

template <typename XT, typename OT>
cudaError_t launch_gemv(const XT* x, const uint8_t* w, const float* w_scale, OT* out, int64_t m, int64_t n, int64_t k,
                        void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (m == 0) return cudaSuccess;
  if (m < 0 || m > kFp8GemvMaxTokens || n <= 0 || k <= 0 || !x || !w || !w_scale || !out) return cudaErrorInvalidValue;
  if (n > INT32_MAX || k > INT32_MAX) return cudaErrorInvalidValue;
  const SmallKernel choice = small_kernel_choice();
  if (fp8_gemv_runs_f16(m, n, k, x, w)) return launch_fp8_gemv_f16(x, w, w_scale, out, m, n, k, stream);
  if (m == 1 && choice != SmallKernel::tiles && fp8_gemv_rows_supported(n, k, x, w))
    return launch_fp8_gemv_rows(x, w, w_scale, out, n, k, stream);
  GemvPlan p;
  if (cudaError_t err = plan_gemv(m, n, k, &p); err != cudaSuccess) return err;
  if (p.workspace > 0 && (!workspace || workspace_bytes < p.workspace)) return cudaErrorInvalidValue;
  float* partial = p.workspace > 0 ? static_cast<float*>(workspace) : nullptr;
  const bool vec = k % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
  const bool x_vec = k % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0;
  const int64_t row_blocks = (n + kGemvRows - 1) / kGemvRows;
  const dim3 grid{unsigned(row_blocks), unsigned(p.splits)};
  const int num_kb = int(fp8_num_blocks(k));
  cudaError_t err = cudaSuccess;
  const int mi = int(m), ni = int(n);
  switch (p.token_tiles) {
    case 1: err = launch_gemv_tiles<1>(vec, p, grid, x, w, w_scale, out, partial, mi, ni, k, num_kb, x_vec, stream); break;
    case 2: err = launch_gemv_tiles<2>(vec, p, grid, x, w, w_scale, out, partial, mi, ni, k, num_kb, x_vec, stream); break;
    case 4: err = launch_gemv_tiles<4>(vec, p, grid, x, w, w_scale, out, partial, mi, ni, k, num_kb, x_vec, stream); break;
    default: err = launch_gemv_tiles<8>(vec, p, grid, x, w, w_scale, out, partial, mi, ni, k, num_kb, x_vec, stream); break;
  }
  if (err != cudaSuccess || !partial) return err;
  const int64_t count = m * n;
  return launch_dependent(sum_splits_kernel<OT>, dim3(unsigned((count + 255) / 256)), dim3(256), 0, stream,
                          static_cast<const float*>(partial), out, count, p.splits);
}

// ---------------------------------------------------------------------------------------------
// Prefill: one CTA = 8 warps = a 128 x 128 tile of out; warp (wm, wn) owns rows 64 wm..+64 and
// columns 32 wn..+32 (4 x 4 mma tiles). K blocks of 128 stream through a 3-stage cp.async ring of
// x and W tiles ([128 rows][160 bytes]: the pad puts a half warp's 8-byte fragment reads on
// distinct banks). Per K block: 4 k32 steps into a zeroed block accumulator, then
// total += block * x_scale[kb, row] * w_scale[n / 128, kb].

constexpr int kTile = 128;
constexpr int kRowStride = 160;
constexpr int kStages = 3;
constexpr int kGemmThreads = 256;
constexpr size_t kStageBytes = size_t(2) * kTile * kRowStride;  // x tile + W tile
constexpr size_t kGemmSmem = kStages * kStageBytes;

__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned s = unsigned(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void mma_e4m3(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.f32.e4m3.e4m3.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Rows [row0, row0 + 128) x bytes [k0, k0 + 128) of a [rows, k] byte matrix into a tile; zeros
// outside it.
template <bool VEC>
__device__ __forceinline__ void load_tile(uint8_t* tile, const uint8_t* src, int64_t rows, int64_t row0, int64_t k,
                                          int64_t k0) {
  if constexpr (VEC) {
#pragma unroll
    for (int j = 0; j < kTile * 8 / kGemmThreads; ++j) {
      const int i = int(threadIdx.x) + j * kGemmThreads, r = i / 8, c = i % 8;
      const bool valid = row0 + r < rows && k0 + 16 * c < k;
      const uint8_t* p = valid ? src + (row0 + r) * k + k0 + 16 * c : src;
      cp_async16(tile + r * kRowStride + 16 * c, p, valid);
    }
  } else {
    for (int i = int(threadIdx.x); i < kTile * kTile; i += kGemmThreads) {
      const int r = i / kTile, c = i % kTile;
      const bool valid = row0 + r < rows && k0 + c < k;
      tile[r * kRowStride + c] = valid ? __ldg(src + (row0 + r) * k + k0 + c) : uint8_t(0);
    }
  }
}

template <bool VEC, typename OT>
__global__ void __launch_bounds__(kGemmThreads, 1)
    fp8_gemm_kernel(const uint8_t* __restrict__ x, const float* __restrict__ x_scale, const uint8_t* __restrict__ w,
                    const float* __restrict__ w_scale, OT* __restrict__ out, int64_t m, int64_t n, int64_t k,
                    int num_kb) {
  extern __shared__ __align__(16) uint8_t smem[];
  const int64_t n0 = int64_t(blockIdx.x) * kTile, m0 = int64_t(blockIdx.y) * kTile;
  const int warp = int(threadIdx.x / 32), lane = int(threadIdx.x % 32), g = lane / 4, t = lane % 4;
  const int wm = warp / 4, wn = warp % 4;

  auto x_tile = [&](int stage) { return smem + size_t(stage) * kStageBytes; };
  auto w_tile = [&](int stage) { return smem + size_t(stage) * kStageBytes + kTile * kRowStride; };
  auto load_stage = [&](int stage, int kb) {
    const int64_t k0 = int64_t(kb) * kTile;
    load_tile<VEC>(x_tile(stage), x, m, m0, k, k0);
    load_tile<VEC>(w_tile(stage), w, n, n0, k, k0);
  };

  float total[4][4][4];
#pragma unroll
  for (int mi = 0; mi < 4; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int j = 0; j < 4; ++j) total[mi][ni][j] = 0.0f;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < num_kb) load_stage(s, s);
    cp_async_commit();
  }
  const float* w_scale_row = w_scale + (n0 / kTile) * num_kb;

  for (int kb = 0; kb < num_kb; ++kb) {
    cp_async_wait<kStages - 2>();
    __syncthreads();  // stage kb landed for every thread; stage kb - 1 is free again
    if (kb + kStages - 1 < num_kb) load_stage((kb + kStages - 1) % kStages, kb + kStages - 1);
    cp_async_commit();

    // The promotion factors of this K block for the thread's 8 rows.
    const float ws = __ldg(w_scale_row + kb);
    float row_scale[4][2];
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t row = m0 + wm * 64 + mi * 16 + g + 8 * h;
        row_scale[mi][h] = row < m ? __ldg(x_scale + int64_t(kb) * m + row) * ws : 0.0f;
      }

    const uint8_t* xt = x_tile(kb % kStages);
    const uint8_t* wt = w_tile(kb % kStages);
    float block[4][4][4];
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
      for (int ni = 0; ni < 4; ++ni)
#pragma unroll
        for (int j = 0; j < 4; ++j) block[mi][ni][j] = 0.0f;
#pragma unroll
    for (int s = 0; s < 4; ++s) {
      const int byte = 32 * s + 8 * t;
      uint32_t a[4][4];
#pragma unroll
      for (int mi = 0; mi < 4; ++mi) {
        const int r = wm * 64 + mi * 16 + g;
        const uint2 lo = *reinterpret_cast<const uint2*>(xt + r * kRowStride + byte);
        const uint2 hi = *reinterpret_cast<const uint2*>(xt + (r + 8) * kRowStride + byte);
        a[mi][0] = lo.x, a[mi][1] = hi.x, a[mi][2] = lo.y, a[mi][3] = hi.y;
      }
#pragma unroll
      for (int ni = 0; ni < 4; ++ni) {
        const uint2 b = *reinterpret_cast<const uint2*>(wt + (wn * 32 + ni * 8 + g) * kRowStride + byte);
#pragma unroll
        for (int mi = 0; mi < 4; ++mi) mma_e4m3(block[mi][ni], a[mi], b.x, b.y);
      }
    }
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
      for (int ni = 0; ni < 4; ++ni)
#pragma unroll
        for (int j = 0; j < 4; ++j) total[mi][ni][j] = fmaf(block[mi][ni][j], row_scale[mi][j / 2], total[mi][ni][j]);
  }
  cp_async_wait<0>();

  // c0, c1: row g, columns 2t, 2t + 1; c2, c3: row g + 8.
#pragma unroll
  for (int mi = 0; mi < 4; ++mi)
#pragma unroll
    for (int ni = 0; ni < 4; ++ni)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int64_t row = m0 + wm * 64 + mi * 16 + g + (j >= 2 ? 8 : 0);
        const int64_t col = n0 + wn * 32 + ni * 8 + 2 * t + (j % 2);
        if (row < m && col < n) store_out(out + row * n + col, total[mi][ni][j]);
      }
}

template <typename OT>
cudaError_t launch_gemm(const uint8_t* x, const float* x_scale, const uint8_t* w, const float* w_scale, OT* out,
                        int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  if (m == 0) return cudaSuccess;
  if (m < 0 || n <= 0 || k <= 0 || !x || !x_scale || !w || !w_scale || !out) return cudaErrorInvalidValue;
  const int64_t grid_n = (n + kTile - 1) / kTile, grid_m = (m + kTile - 1) / kTile;
  if (grid_n > INT32_MAX || grid_m > 65535 || k > INT32_MAX) return cudaErrorInvalidValue;
  const bool vec = k % 16 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
  const auto kernel = vec ? fp8_gemm_kernel<true, OT> : fp8_gemm_kernel<false, OT>;
  if (cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kGemmSmem));
      err != cudaSuccess)
    return err;
  kernel<<<dim3(unsigned(grid_n), unsigned(grid_m)), kGemmThreads, kGemmSmem, stream>>>(
      x, x_scale, w, w_scale, out, m, n, k, int(fp8_num_blocks(k)));
  return cudaGetLastError();
}

}  // namespace

size_t fp8_block_gemv_workspace_bytes(int64_t m, int64_t n, int64_t k) {
  GemvPlan p;
  if (m <= 0 || n <= 0 || k <= 0 || plan_gemv(m, n, k, &p) != cudaSuccess) return 0;
  return p.workspace;
}

cudaError_t launch_fp8_block_gemv(const float* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                                  int64_t n, int64_t k, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return launch_gemv(x, w, w_scale, out, m, n, k, workspace, workspace_bytes, stream);
}
cudaError_t launch_fp8_block_gemv(const uint16_t* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                                  int64_t n, int64_t k, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return launch_gemv(x, w, w_scale, out, m, n, k, workspace, workspace_bytes, stream);
}
cudaError_t launch_fp8_block_gemv(const float* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t m,
                                  int64_t n, int64_t k, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return launch_gemv(x, w, w_scale, out, m, n, k, workspace, workspace_bytes, stream);
}
cudaError_t launch_fp8_block_gemv(const uint16_t* x, const uint8_t* w, const float* w_scale, uint16_t* out,
                                  int64_t m, int64_t n, int64_t k, void* workspace, size_t workspace_bytes,
                                  cudaStream_t stream) {
  return launch_gemv(x, w, w_scale, out, m, n, k, workspace, workspace_bytes, stream);
}

cudaError_t launch_fp8_block_gemm(const uint8_t* x_fp8, const float* x_scale, const uint8_t* w, const float* w_scale,
                                  float* out, int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  return launch_gemm(x_fp8, x_scale, w, w_scale, out, m, n, k, stream);
}
cudaError_t launch_fp8_block_gemm(const uint8_t* x_fp8, const float* x_scale, const uint8_t* w, const float* w_scale,
                                  uint16_t* out, int64_t m, int64_t n, int64_t k, cudaStream_t stream) {
  return launch_gemm(x_fp8, x_scale, w, w_scale, out, m, n, k, stream);
}

}  // namespace troupe::kernels
