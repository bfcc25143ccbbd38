#include <cuda_bf16.h>

#include <algorithm>

#include "kernels/dependent_launch.cuh"
#include "kernels/fp8_quant.hpp"
#include "kernels/fp8_stream.cuh"
#include "kernels/moe_grouped_gemv.hpp"

// The mma mapping is fp8_block_gemm.cu's decode one (kernels/fp8_stream.cuh): thread (g = lane / 4,
// t = lane % 4) of a warp owns W rows g and g + 8 of the warp's 16 and 32 bytes of each 128-wide K
// block of them, and takes the bf16 of x at the same K positions (an x_perm row) as its B fragment.
namespace troupe::kernels {
namespace {

using namespace fp8_stream;

constexpr int kWarps = 4;  // row warps of a CTA (each K part has its own kWarps warps)
constexpr int kRowsPerCta = kWarps * 16;   // plain: 64 W rows
constexpr int kColsPerCta = kWarps / 2 * 16;  // gate/up + silu: 32 act columns
constexpr int kMaxTiles = 4;  // 8-token mma tiles per pass over the weights (fewer: TILES)
constexpr float kPromote = 281474976710656.0f;  // 2^48 = 2^112 / 2^64: w_scale times this

__device__ __forceinline__ uint16_t to_bf16_bits(float v) {
  const __nv_bfloat16 b = __float2bfloat16_rn(v);
  return *reinterpret_cast<const uint16_t*>(&b);
}

// ---------------------------------------------------------------------------------------------
// 0. The local ids (and the shared expert's slot): one thread per output slot.

__global__ void local_ids_kernel(const int32_t* __restrict__ ids, const float* __restrict__ weights, int64_t n,
                                 int top_k, int begin, int num_local, int with_shared, int32_t* __restrict__ ids_out,
                                 float* __restrict__ weights_out) {
  allow_dependents();  // a programmatic dependent (launch_dependent): nothing read before the wait
  wait_for_prerequisites();
  const int out_k = top_k + with_shared;
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * out_k) return;
  const int64_t t = i / out_k;
  const int s = int(i % out_k);
  if (s < top_k) {
    const int id = ids[t * top_k + s];
    ids_out[i] = id >= begin && id < begin + num_local ? id - begin : -1;
    weights_out[i] = weights[t * top_k + s];
  } else {
    ids_out[i] = num_local;
    weights_out[i] = 1.0f;
  }
}

// ---------------------------------------------------------------------------------------------
// 1. The active experts: one CTA of 512 threads, thread e for local expert e.

__global__ void active_experts_kernel(const int32_t* __restrict__ ids, int num_slots, const int32_t* __restrict__ counts,
                                      const int32_t* __restrict__ offsets, int begin, int num_local,
                                      int32_t* __restrict__ num_active, int32_t* __restrict__ active_expert,
                                      int32_t* __restrict__ active_begin, int32_t* __restrict__ slot_pos) {
  __shared__ int warp_sums[kMoeGroupedMaxExperts / 32];
  const int e = int(threadIdx.x), lane = e % 32, warp = e / 32;
  const int has = e < num_local && counts[begin + e] > 0 ? 1 : 0;
  int v = has;  // inclusive scan in the warp
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const int y = __shfl_up_sync(0xffffffffu, v, d);
    if (lane >= d) v += y;
  }
  if (lane == 31) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    int w = lane < kMoeGroupedMaxExperts / 32 ? warp_sums[lane] : 0;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const int y = __shfl_up_sync(0xffffffffu, w, d);
      if (lane >= d) w += y;
    }
    if (lane < kMoeGroupedMaxExperts / 32) warp_sums[lane] = w;
  }
  __syncthreads();
  const int rank = v - has + (warp > 0 ? warp_sums[warp - 1] : 0);
  const int total = warp_sums[kMoeGroupedMaxExperts / 32 - 1];
  if (has) {
    active_expert[rank] = e;
    active_begin[rank] = offsets[begin + e];
  }
  if (e == 0) {
    *num_active = total;
    active_begin[total] = offsets[begin + num_local];
  }
  for (int s = e; s < num_slots; s += int(blockDim.x)) {
    const int id = ids[s];
    if (id < begin || id >= begin + num_local) slot_pos[s] = -1;
  }
}

// ---------------------------------------------------------------------------------------------
// 0 + align + 1 in one CTA (launch_moe_slots_one_block): thread s for slot s, thread e for table
// expert e; two block-wide exclusive scans (slot counts, and experts with a slot).

constexpr int kSlotsThreads = kMoeGroupedMaxExperts;  // >= kMoeSlotsOneBlockMax
constexpr int kSlotsWarps = kSlotsThreads / 32;

// Exclusive scans of a and b over the CTA (thread order); totals in *total_a, *total_b.
__device__ __forceinline__ void block_exclusive_scan2(int& a, int& b, int* total_a, int* total_b) {
  __shared__ int warp_a[kSlotsWarps], warp_b[kSlotsWarps];
  const int lane = int(threadIdx.x % 32), warp = int(threadIdx.x / 32);
  int ia = a, ib = b;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const int ya = __shfl_up_sync(0xffffffffu, ia, d), yb = __shfl_up_sync(0xffffffffu, ib, d);
    if (lane >= d) ia += ya, ib += yb;
  }
  if (lane == 31) warp_a[warp] = ia, warp_b[warp] = ib;
  __syncthreads();
  if (warp == 0) {
    int wa = lane < kSlotsWarps ? warp_a[lane] : 0, wb = lane < kSlotsWarps ? warp_b[lane] : 0;
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const int ya = __shfl_up_sync(0xffffffffu, wa, d), yb = __shfl_up_sync(0xffffffffu, wb, d);
      if (lane >= d) wa += ya, wb += yb;
    }
    if (lane < kSlotsWarps) warp_a[lane] = wa, warp_b[lane] = wb;
  }
  __syncthreads();
  a = ia - a + (warp > 0 ? warp_a[warp - 1] : 0);
  b = ib - b + (warp > 0 ? warp_b[warp - 1] : 0);
  *total_a = warp_a[kSlotsWarps - 1];
  *total_b = warp_b[kSlotsWarps - 1];
}

__global__ void __launch_bounds__(kSlotsThreads)
    slots_one_block_kernel(const int32_t* __restrict__ ids, const float* __restrict__ weights, int n, int top_k,
                           int begin, int num_local, int with_shared, int32_t* __restrict__ ids_out,
                           float* __restrict__ weights_out, int32_t* __restrict__ counts, int32_t* __restrict__ offsets,
                           int32_t* __restrict__ sorted_slots, int32_t* __restrict__ slot_pos,
                           int32_t* __restrict__ num_active, int32_t* __restrict__ active_expert,
                           int32_t* __restrict__ active_begin) {
  __shared__ int slot_id[kMoeSlotsOneBlockMax], count[kMoeGroupedMaxExperts], start[kMoeGroupedMaxExperts];
  allow_dependents();  // a programmatic dependent (launch_dependent): nothing read before the wait
  wait_for_prerequisites();
  const int tid = int(threadIdx.x), out_k = top_k + with_shared, slots = n * out_k;
  const int experts = num_local + with_shared;
  if (tid < experts) count[tid] = 0;
  if (tid < slots) {  // 0. local ids (moe_local_ids)
    const int t = tid / out_k, j = tid % out_k;
    int id = num_local;
    float w = 1.0f;
    if (j < top_k) {
      const int global = ids[t * top_k + j];
      id = global >= begin && global < begin + num_local ? global - begin : -1;
      w = weights[t * top_k + j];
    }
    ids_out[tid] = id;
    weights_out[tid] = w;
    slot_id[tid] = id;
  }
  __syncthreads();
  if (tid < slots && slot_id[tid] >= 0) atomicAdd(&count[slot_id[tid]], 1);
  __syncthreads();
  // align's offsets (pad 1) and the active experts' ranks.
  const int mine = tid < experts ? count[tid] : 0;
  int offset = mine, rank = mine > 0 ? 1 : 0, total = 0, total_active = 0;
  block_exclusive_scan2(offset, rank, &total, &total_active);
  if (tid < experts) {
    counts[tid] = mine;
    offsets[tid] = offset;
    start[tid] = offset;
    if (mine > 0) {
      active_expert[rank] = tid;
      active_begin[rank] = offset;
    }
  }
  if (tid == 0) {
    offsets[experts] = total;
    *num_active = total_active;
    active_begin[total_active] = total;
  }
  __syncthreads();
  if (tid < slots) {  // positions in slot order within each expert; another rank's slots: -1
    const int e = slot_id[tid];
    int p = -1;
    if (e >= 0) {
      p = start[e];
      for (int s = 0; s < tid; ++s) p += slot_id[s] == e;
      sorted_slots[p] = tid;
    }
    slot_pos[tid] = p;
  }
  if (tid >= total && tid < slots) sorted_slots[tid] = -1;
}

// ---------------------------------------------------------------------------------------------
// 2. The gather, scaled to bf16 * 2^64: CTA (position, column chunk), 8 columns a thread.

__device__ __forceinline__ float load_value(const float* x, int64_t i) { return __ldg(x + i); }
__device__ __forceinline__ float load_value(const uint16_t* x, int64_t i) {
  return __uint_as_float(uint32_t(__ldg(x + i)) << 16);
}

__device__ __forceinline__ void load8(const float* p, float (&v)[8]) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(p)), b = __ldg(reinterpret_cast<const float4*>(p) + 1);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ __forceinline__ void load8(const uint16_t* p, float (&v)[8]) {
  const uint4 a = __ldg(reinterpret_cast<const uint4*>(p));
  const uint32_t words[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    v[2 * j] = __uint_as_float(words[j] << 16);
    v[2 * j + 1] = __uint_as_float(words[j] & 0xffff0000u);
  }
}

constexpr int kGatherThreads = 128;

// vec: 16-byte loads of x (k % 8 == 0, x 16-byte aligned).
template <typename XT>
__global__ void gather_scaled_kernel(const XT* __restrict__ x, const int32_t* __restrict__ sorted_slots, int slot_div,
                                     uint16_t* __restrict__ x_perm, int64_t k, int64_t x_stride, bool vec) {
  allow_dependents();  // a programmatic dependent (launch_dependent): nothing read before the wait
  wait_for_prerequisites();
  const int64_t p = blockIdx.x;
  const int64_t c0 = 8 * (int64_t(blockIdx.y) * kGatherThreads + threadIdx.x);
  if (c0 >= x_stride) return;
  const int slot = sorted_slots[p];
  const XT* src = x + (slot >= 0 ? int64_t(slot / slot_div) * k : 0);
  float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  if (slot >= 0 && vec && c0 + 8 <= k) {
    load8(src + c0, v);
  } else if (slot >= 0) {
#pragma unroll
    for (int j = 0; j < 8; ++j) v[j] = c0 + j < k ? load_value(src, c0 + j) : 0.0f;
  }
  uint32_t w[4];
#pragma unroll
  for (int j = 0; j < 4; ++j)
    w[j] = uint32_t(to_bf16_bits(v[2 * j] * kMoeXShift)) | (uint32_t(to_bf16_bits(v[2 * j + 1] * kMoeXShift)) << 16);
  *reinterpret_cast<uint4*>(x_perm + p * x_stride + c0) = make_uint4(w[0], w[1], w[2], w[3]);
}

// ---------------------------------------------------------------------------------------------
// 3 and 4. The grouped GEMV. CTA (blockIdx.x, j): active expert j, W rows of tile blockIdx.x.
// SILU: row warps 0, 1 take gate rows c0 + 16 w, row warps 2, 3 the up rows inter + c0 + 16 (w - 2),
// and the CTA writes act columns c0 .. c0 + 31 through a shared-memory exchange of the up sums.
// KSPLIT: the CTA has KSPLIT x kWarps warps; warp w takes row warp w % kWarps over K part w / kWarps
// (a contiguous range of K blocks), and the parts' sums meet in shared memory before the epilogue.
// Small batches touch few experts (R1 at batch 1: 9 of them, about 4 CTAs per SM), so without the
// split too few loads are in flight to stream HBM at full rate.

template <int TILES, int KSPLIT, bool VEC, bool SILU>
__global__ void __launch_bounds__(KSPLIT * kWarps * 32)
    grouped_gemv_kernel(const uint16_t* __restrict__ x_perm, int64_t x_stride, const uint8_t* const* __restrict__ w_of,
                        const float* const* __restrict__ scale_of, const int32_t* __restrict__ num_active,
                        const int32_t* __restrict__ active_expert, const int32_t* __restrict__ active_begin,
                        void* __restrict__ out_raw, int64_t out_stride, int w_rows, int out_cols, int64_t k) {
  // The active experts in reverse: the last one (the shared expert when it rides along, the one
  // with every token and so the most passes) is dispatched first, not left as the launch's tail.
  const int count = *num_active;
  if (int(blockIdx.y) >= count) return;  // the whole CTA, before any barrier
  const int j = count - 1 - int(blockIdx.y);
  const int expert = active_expert[j], p_begin = active_begin[j], p_end = active_begin[j + 1];
  const uint8_t* w = w_of[expert];
  const float* w_scale = scale_of[expert];
  const int num_kb = int((k + 127) / 128);

  const int lane = int(threadIdx.x % 32), g = lane / 4, t = lane % 4;
  const int warp = int(threadIdx.x / 32) % kWarps, kpart = int(threadIdx.x / 32) / kWarps;
  const int part_kb = (num_kb + KSPLIT - 1) / KSPLIT;
  const int kb_begin = min(num_kb, kpart * part_kb), kb_end = min(num_kb, kb_begin + part_kb);
  int col0, row0;  // the warp's first output column and its first W row
  if constexpr (SILU) {
    col0 = int(blockIdx.x) * kColsPerCta + (warp % 2) * 16;
    row0 = (warp >= 2 ? out_cols : 0) + col0;
  } else {
    col0 = int(blockIdx.x) * kRowsPerCta + warp * 16;
    row0 = col0;
  }
  const bool valid_a = col0 + g < out_cols, valid_b = col0 + g + 8 < out_cols;
  const int ra = valid_a ? row0 + g : w_rows - 1, rb = valid_b ? row0 + g + 8 : w_rows - 1;
  const uint8_t* row_a = w + int64_t(ra) * k;
  const uint8_t* row_b = w + int64_t(rb) * k;
  const float* scale_a = w_scale + int64_t(ra / 128) * num_kb;
  const float* scale_b = w_scale + int64_t(rb / 128) * num_kb;

  constexpr int kTiles = TILES, kPassTokens = TILES * 8;
  __shared__ float up_sums[SILU ? kPassTokens : 1][SILU ? kColsPerCta : 1];
  __shared__ float part_sums[KSPLIT > 1 ? KSPLIT - 1 : 1][kWarps][32][kTiles * 4];

  for (int pass = p_begin; pass < p_end; pass += kPassTokens) {
    const int tiles = min(kTiles, (p_end - pass + 7) / 8);
    // The x rows of this thread's token column g per tile (nullptr past the expert's tokens).
    const uint16_t* xrow[kTiles];
#pragma unroll
    for (int mt = 0; mt < kTiles; ++mt) {
      const int p = pass + mt * 8 + g;
      xrow[mt] = p < p_end ? x_perm + int64_t(p) * x_stride : nullptr;
    }
    float total[kTiles][4];
#pragma unroll
    for (int mt = 0; mt < kTiles; ++mt) total[mt][0] = total[mt][1] = total[mt][2] = total[mt][3] = 0.0f;

    uint4 w0[4], w1[4], w2[4];  // K blocks i, i + 1, i + 2: {a lo, a hi, b lo, b hi}
    auto load_block = [&](uint4 (&d)[4], int kb) {
      const int64_t kb0 = int64_t(kb) * 128;
      load_w_piece<VEC>(row_a, kb0, t, k, d[0], d[1]);
      load_w_piece<VEC>(row_b, kb0, t, k, d[2], d[3]);
    };
    if (kb_begin < kb_end) load_block(w0, kb_begin);
    if (kb_begin + 1 < kb_end) load_block(w1, kb_begin + 1);
    for (int i = kb_begin; i < kb_end; ++i) {
      if (i + 2 < kb_end) load_block(w2, i + 2);
      float block[kTiles][4];
#pragma unroll
      for (int mt = 0; mt < kTiles; ++mt) block[mt][0] = block[mt][1] = block[mt][2] = block[mt][3] = 0.0f;
#pragma unroll
      for (int p = 0; p < 4; ++p) {  // piece p (fp8_stream.cuh): k16 steps 2p and 2p + 1
        const uint32_t a_lo = word_of(w0[p / 2], 2 * (p % 2)), a_hi = word_of(w0[p / 2], 2 * (p % 2) + 1);
        const uint32_t b_lo = word_of(w0[2 + p / 2], 2 * (p % 2)), b_hi = word_of(w0[2 + p / 2], 2 * (p % 2) + 1);
        const uint32_t s0a0 = e4m3x2_to_bf16x2_shifted(a_lo), s0a2 = e4m3x2_to_bf16x2_shifted(a_lo >> 16);
        const uint32_t s0a1 = e4m3x2_to_bf16x2_shifted(b_lo), s0a3 = e4m3x2_to_bf16x2_shifted(b_lo >> 16);
        const uint32_t s1a0 = e4m3x2_to_bf16x2_shifted(a_hi), s1a2 = e4m3x2_to_bf16x2_shifted(a_hi >> 16);
        const uint32_t s1a1 = e4m3x2_to_bf16x2_shifted(b_hi), s1a3 = e4m3x2_to_bf16x2_shifted(b_hi >> 16);
#pragma unroll
        for (int mt = 0; mt < kTiles; ++mt) {
          if (mt >= tiles) continue;  // uniform over the CTA
          const uint4 xv =
              xrow[mt] ? __ldg(reinterpret_cast<const uint4*>(xrow[mt] + int64_t(i) * 128 + piece_offset(t, p))) : zero4();
          mma_bf16(block[mt], s0a0, s0a1, s0a2, s0a3, xv.x, xv.y);
          mma_bf16(block[mt], s1a0, s1a1, s1a2, s1a3, xv.z, xv.w);
        }
      }
      const float sa = __ldg(scale_a + i) * kPromote, sb = __ldg(scale_b + i) * kPromote;
#pragma unroll
      for (int mt = 0; mt < kTiles; ++mt) {
        total[mt][0] = fmaf(block[mt][0], sa, total[mt][0]);
        total[mt][1] = fmaf(block[mt][1], sa, total[mt][1]);
        total[mt][2] = fmaf(block[mt][2], sb, total[mt][2]);
        total[mt][3] = fmaf(block[mt][3], sb, total[mt][3]);
      }
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        w0[q] = w1[q];
        w1[q] = w2[q];
      }
    }

    // The K parts' sums: parts 1.. hand theirs to part 0, whose warps finish the pass alone.
    if constexpr (KSPLIT > 1) {
      if (kpart > 0) {
#pragma unroll
        for (int mt = 0; mt < kTiles; ++mt)
#pragma unroll
          for (int q = 0; q < 4; ++q) part_sums[kpart - 1][warp][lane][mt * 4 + q] = total[mt][q];
      }
      __syncthreads();
      if (kpart == 0) {
#pragma unroll
        for (int part = 0; part < KSPLIT - 1; ++part)
#pragma unroll
          for (int mt = 0; mt < kTiles; ++mt)
#pragma unroll
            for (int q = 0; q < 4; ++q) total[mt][q] += part_sums[part][warp][lane][mt * 4 + q];
      }
    }

    // c0, c1: column g of the warp's 16, tokens 2t, 2t + 1; c2, c3: column g + 8. Totals are the
    // real products: x 2^64 times w 2^-112 times w_scale 2^48 (kPromote) cancel out.
    if constexpr (SILU) {
      uint16_t* act = static_cast<uint16_t*>(out_raw);
      if (kpart == 0 && warp >= 2) {
#pragma unroll
        for (int mt = 0; mt < kTiles; ++mt)
#pragma unroll
          for (int q = 0; q < 4; ++q)
            up_sums[mt * 8 + 2 * t + (q % 2)][(warp % 2) * 16 + g + (q >= 2 ? 8 : 0)] = total[mt][q];
      }
      __syncthreads();
      if (kpart == 0 && warp < 2) {
#pragma unroll
        for (int mt = 0; mt < kTiles; ++mt) {
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            const int tok = mt * 8 + 2 * t + (q % 2), local = (warp % 2) * 16 + g + (q >= 2 ? 8 : 0);
            const int p = pass + tok, col = col0 + g + (q >= 2 ? 8 : 0);
            if (mt >= tiles || p >= p_end) continue;
            const float gate = total[mt][q], up = up_sums[tok][local];
            const float v = gate / (1.0f + expf(-gate)) * up;
            act[int64_t(p) * out_stride + col] = col < out_cols ? to_bf16_bits(v * kMoeXShift) : uint16_t(0);
          }
        }
      }
      __syncthreads();  // up_sums and part_sums are free for the next pass
    } else {
      float* y = static_cast<float*>(out_raw);
      if (kpart == 0) {
#pragma unroll
        for (int mt = 0; mt < kTiles; ++mt) {
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            const int p = pass + mt * 8 + 2 * t + (q % 2), row = col0 + g + (q >= 2 ? 8 : 0);
            if (mt >= tiles || p >= p_end || row >= out_cols) continue;
            y[int64_t(p) * out_stride + row] = total[mt][q];
          }
        }
      }
      if constexpr (KSPLIT > 1) __syncthreads();  // part_sums is free for the next pass
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <bool SILU>
cudaError_t launch_grouped(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* w,
                           const float* const* w_scale, const int32_t* num_active, const int32_t* active_expert,
                           const int32_t* active_begin, int64_t max_active, void* out, int64_t out_stride,
                           int64_t w_rows, int64_t out_cols, int64_t grid_x, int64_t k, int64_t max_tokens,
                           cudaStream_t stream) {
  if (max_active == 0) return cudaSuccess;
  if (max_active < 0 || max_active > 65535 || k <= 0 || k > INT32_MAX || w_rows <= 0 || w_rows > INT32_MAX ||
      x_stride < moe_perm_stride(k) || x_stride % 8 != 0 || !aligned16(x_perm) || !x_perm || !w || !w_scale ||
      !num_active || !active_expert || !active_begin || !out || grid_x > INT32_MAX)
    return cudaErrorInvalidValue;
  const dim3 grid{unsigned(grid_x), unsigned(max_active)};
  // No expert has more tokens than the batch (a token's experts are distinct), so small batches
  // take the kernel with fewer accumulator tiles (fewer registers, more warps per SM).
  const bool vec = k % 16 == 0;
  // Up to 64 tokens an expert holds ~2 on average with R1's 256 experts and top-8 (rarely over 16).
  // Fewer tokens: fewer experts, so the K split adds the warps (and loads in flight) they lack.
  const auto kernel = max_tokens <= 8    ? (vec ? grouped_gemv_kernel<1, 2, true, SILU> : grouped_gemv_kernel<1, 2, false, SILU>)
                      : max_tokens <= 64 ? (vec ? grouped_gemv_kernel<2, 2, true, SILU> : grouped_gemv_kernel<2, 2, false, SILU>)
                                         : (vec ? grouped_gemv_kernel<kMaxTiles, 1, true, SILU>
                                                : grouped_gemv_kernel<kMaxTiles, 1, false, SILU>);
  const int ksplit = max_tokens <= 64 ? 2 : 1;
  kernel<<<grid, ksplit * kWarps * 32, 0, stream>>>(x_perm, x_stride, w, w_scale, num_active, active_expert, active_begin, out,
                                        out_stride, int(w_rows), int(out_cols), k);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_moe_local_ids(const int32_t* ids, const float* weights, int64_t n, int32_t top_k,
                                 int32_t expert_begin, int32_t num_local, bool with_shared, int32_t* ids_out,
                                 float* weights_out, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (n < 0 || top_k < 1 || num_local < 1 || expert_begin < 0 || n * (top_k + 1) > INT32_MAX || !ids || !weights ||
      !ids_out || !weights_out)
    return cudaErrorInvalidValue;
  const int64_t count = n * (top_k + (with_shared ? 1 : 0));
  return launch_dependent(local_ids_kernel, dim3(unsigned((count + 255) / 256)), dim3(256), 0, stream, ids, weights, n,
                          int(top_k), int(expert_begin), int(num_local), with_shared ? 1 : 0, ids_out, weights_out);
}

cudaError_t launch_moe_slots_one_block(const int32_t* ids, const float* weights, int64_t n, int32_t top_k,
                                       int32_t expert_begin, int32_t num_local, bool with_shared, int32_t* ids_out,
                                       float* weights_out, int32_t* counts, int32_t* offsets, int32_t* sorted_slots,
                                       int32_t* slot_pos, int32_t* num_active, int32_t* active_expert,
                                       int32_t* active_begin, cudaStream_t stream) {
  const int64_t slots = n * (top_k + (with_shared ? 1 : 0));
  if (n < 0 || top_k < 1 || num_local < 1 || expert_begin < 0 || slots > kMoeSlotsOneBlockMax ||
      int64_t(num_local) + (with_shared ? 1 : 0) > kMoeGroupedMaxExperts || !counts || !offsets || !num_active ||
      !active_expert || !active_begin ||
      (slots > 0 && (!ids || !weights || !ids_out || !weights_out || !sorted_slots || !slot_pos)))
    return cudaErrorInvalidValue;
  return launch_dependent(slots_one_block_kernel, dim3(1), dim3(kSlotsThreads), 0, stream, ids, weights, int(n),
                          int(top_k), int(expert_begin), int(num_local), with_shared ? 1 : 0, ids_out, weights_out,
                          counts, offsets, sorted_slots, slot_pos, num_active, active_expert, active_begin);
}

cudaError_t launch_moe_active_experts(const int32_t* ids, int64_t num_slots, int32_t num_experts,
                                      const int32_t* counts, const int32_t* offsets, int32_t expert_begin,
                                      int32_t num_local, int32_t* num_active, int32_t* active_expert,
                                      int32_t* active_begin, int32_t* slot_pos, cudaStream_t stream) {
  if (num_slots < 0 || num_slots > INT32_MAX || num_experts < 1 || num_experts > kMoeGroupedMaxExperts ||
      num_local < 1 || expert_begin < 0 || int64_t(expert_begin) + num_local > num_experts || !counts || !offsets ||
      !num_active || !active_expert || !active_begin || (num_slots > 0 && (!ids || !slot_pos)))
    return cudaErrorInvalidValue;
  active_experts_kernel<<<1, kMoeGroupedMaxExperts, 0, stream>>>(ids, int(num_slots), counts, offsets, expert_begin,
                                                                  num_local, num_active, active_expert, active_begin,
                                                                  slot_pos);
  return cudaGetLastError();
}

template <typename XT>
cudaError_t launch_gather(const XT* x, const int32_t* sorted_slots, int32_t slot_div, uint16_t* x_perm,
                          int64_t num_positions, int64_t k, int64_t x_stride, cudaStream_t stream) {
  if (num_positions == 0) return cudaSuccess;
  if (num_positions < 0 || num_positions > INT32_MAX || k <= 0 || x_stride < moe_perm_stride(k) || x_stride % 8 != 0 ||
      slot_div < 1 || !x || !sorted_slots || !x_perm || !aligned16(x_perm))
    return cudaErrorInvalidValue;
  const bool vec = k % 8 == 0 && aligned16(x);
  const int64_t chunks = (x_stride / 8 + kGatherThreads - 1) / kGatherThreads;
  const dim3 grid{unsigned(num_positions), unsigned(chunks)};
  return launch_dependent(gather_scaled_kernel<XT>, grid, dim3(kGatherThreads), 0, stream, x, sorted_slots, int(slot_div),
                          x_perm, k, x_stride, vec);
}

cudaError_t launch_moe_gather_scaled(const float* x, const int32_t* sorted_slots, int32_t slot_div, uint16_t* x_perm,
                                     int64_t num_positions, int64_t k, int64_t x_stride, cudaStream_t stream) {
  return launch_gather(x, sorted_slots, slot_div, x_perm, num_positions, k, x_stride, stream);
}
cudaError_t launch_moe_gather_scaled(const uint16_t* x, const int32_t* sorted_slots, int32_t slot_div,
                                     uint16_t* x_perm, int64_t num_positions, int64_t k, int64_t x_stride,
                                     cudaStream_t stream) {
  return launch_gather(x, sorted_slots, slot_div, x_perm, num_positions, k, x_stride, stream);
}

cudaError_t launch_moe_grouped_gate_up_silu(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* gate_up,
                                            const float* const* gate_up_scale, const int32_t* num_active,
                                            const int32_t* active_expert, const int32_t* active_begin,
                                            int64_t max_active, uint16_t* act_perm, int64_t act_stride,
                                            int64_t inter, int64_t k, int64_t max_tokens, cudaStream_t stream) {
  if (inter <= 0 || inter > INT32_MAX / 2 || act_stride < moe_perm_stride(inter)) return cudaErrorInvalidValue;
  // Every act column up to act_stride is written (zeros past inter).
  return launch_grouped<true>(x_perm, x_stride, gate_up, gate_up_scale, num_active, active_expert, active_begin,
                              max_active, act_perm, act_stride, 2 * inter, inter,
                              (act_stride + kColsPerCta - 1) / kColsPerCta, k, max_tokens, stream);
}

cudaError_t launch_moe_grouped_gemv(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* w,
                                    const float* const* w_scale, const int32_t* num_active,
                                    const int32_t* active_expert, const int32_t* active_begin, int64_t max_active,
                                    float* y_perm, int64_t n, int64_t k, int64_t max_tokens, cudaStream_t stream) {
  if (n <= 0) return cudaErrorInvalidValue;
  return launch_grouped<false>(x_perm, x_stride, w, w_scale, num_active, active_expert, active_begin, max_active,
                               y_perm, n, n, n, (n + kRowsPerCta - 1) / kRowsPerCta, k, max_tokens, stream);
}

}  // namespace troupe::kernels
