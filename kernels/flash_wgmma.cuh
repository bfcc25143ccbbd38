#pragma once
// The flash-attention main loop on Hopper warpgroup MMA (sm_90a), shared by the MLA prefill kernel
// (mla_prefill_wgmma.cu: q.k over 192 dims) and the GQA prefill kernel (attention_prefill_wgmma.cu:
// 128): online softmax over K/V tiles of kKeys keys for kGroups warpgroups of 64 query rows each, V
// and O 128 wide. The caller stages Q and the tiles (its own addressing) through the callbacks and
// gives its rows' positions for the causal mask; everything else is here.
//
// Shared memory (1,024-aligned base): Q as kQkBlocks column blocks of 64 dims (rows of 128 bytes in
// the 128-byte swizzle, wgmma.cuh), then two stages, each K (kQkBlocks blocks, K-major) and V (two
// blocks; N-major for P V). Step t issues S_t = Q K_t and O += P_{t-1} V_{t-1} together, and the
// softmax of S_t runs while the second product is on the tensor cores (FlashAttention-3's
// intra-warpgroup overlap). Stage t % 2 holds K_t and V_t; step t loads K_{t+1} over K_{t-1} (read
// by S_{t-1}, finished in step t-1) and V_t over V_{t-2} (finished in step t-1): two barriers a
// step. The first step has no P V and the last (t = num_tiles) no S; they are peeled so that no
// wgmma sits under a branch (ptxas serializes those, C7515 / C7518), which is also why every
// warpgroup computes every tile, fully masked where its rows all precede it.
//
// Accumulator layout (m64nN): thread (warp w, lane l) of a warpgroup holds rows 16 w + l / 4 and
// + 8; s[4 n + e] is row + 8 (e / 2), column 8 n + 2 (l % 4) + e % 2. P, S's accumulators rounded
// to bf16, is the A fragment of P V straight from registers (keys [16 kk, + 16): S's n8 tiles 2 kk
// and 2 kk + 1). Precision: q, K, V and P bf16, every sum fp32.
#include <cuda_bf16.h>

#include <cstdint>

#include "kernels/wgmma.cuh"

namespace troupe::kernels::flash_wgmma {

template <int kGroups, int kKeys, int kQkBlocks>
struct Layout {
  static constexpr int kThreads = 128 * kGroups, kRows = 64 * kGroups;
  static constexpr int kVBlocks = 2;                          // V and O: 128 dims
  static constexpr int kQBlock = kRows * 128;                 // one 64-dim column block of Q
  static constexpr int kKBlock = kKeys * 128, kVBlock = kKeys * 128;
  static constexpr int kStage = kQkBlocks * kKBlock + kVBlocks * kVBlock;
  static constexpr int kQ = 0, kStages = kQkBlocks * kQBlock;  // offsets from the 1,024-aligned base
  static constexpr int kBytes = kStages + 2 * kStage + 1024;   // + slack for the alignment
  static constexpr int kScores = kKeys / 2;                    // S accumulators a thread
  static __device__ __forceinline__ uint32_t k_stage(uint32_t base, int t) { return base + kStages + (t & 1) * kStage; }
  static __device__ __forceinline__ uint32_t v_stage(uint32_t base, int t) { return k_stage(base, t) + kQkBlocks * kKBlock; }
};

// Byte offset of 16-byte chunk `chunk` (of 8) of `row` in a 128-byte-swizzled block.
__device__ __forceinline__ uint32_t swizzled(int row, int chunk) { return uint32_t(row * 128 + ((chunk ^ (row & 7)) << 4)); }
// 2^x on the SFU, one instruction (exp2f adds a denormal fix-up around it); 2^-inf = +0.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
using mma::pack_bf16x2;

// S's accumulators over kKeys keys (the m64 layout above), rounded to bf16, as the A fragments of P V's
// k16 steps (keys [16 kk, + 16): S's n8 tiles 2 kk and 2 kk + 1).
template <int kKeys>
__device__ __forceinline__ void pack_p(const float (&s)[kKeys / 2], uint32_t (&p)[kKeys / 16][4]) {
#pragma unroll
  for (int kk = 0; kk < kKeys / 16; ++kk) {
    p[kk][0] = pack_bf16x2(s[8 * kk + 0], s[8 * kk + 1]);
    p[kk][1] = pack_bf16x2(s[8 * kk + 2], s[8 * kk + 3]);
    p[kk][2] = pack_bf16x2(s[8 * kk + 4], s[8 * kk + 5]);
    p[kk][3] = pack_bf16x2(s[8 * kk + 6], s[8 * kk + 7]);
  }
}

// O (the m64 accumulator layout, N values a thread) times its rows' online-softmax corrections:
// corr0 for row r, corr1 for row r + 8; skipped when no row of the warp moved its maximum.
template <int N>
__device__ __forceinline__ void rescale_rows(float (&o)[N], float corr0, float corr1) {
  if (!__any_sync(0xffffffffu, corr0 != 1.0f || corr1 != 1.0f)) return;
#pragma unroll
  for (int n = 0; n < N / 4; ++n) {
    o[4 * n + 0] *= corr0;
    o[4 * n + 1] *= corr0;
    o[4 * n + 2] *= corr1;
    o[4 * n + 3] *= corr1;
  }
}

template <int kKeys>
struct ScoreOps;
template <>
struct ScoreOps<128> {
  static __device__ __forceinline__ void mma(float (&d)[64], uint64_t a, uint64_t b, int acc) {
    wgmma::wgmma_m64n128k16_bf16_ss(d, a, b, acc);
  }
};
template <>
struct ScoreOps<64> {
  static __device__ __forceinline__ void mma(float (&d)[32], uint64_t a, uint64_t b, int acc) {
    wgmma::wgmma_m64n64k16_bf16_ss(d, a, b, acc);
  }
};

// Runs the loop for this thread's warpgroup g over num_tiles (>= 1) K/V tiles; every thread of the
// CTA calls it. load_q() stores Q (bf16, swizzled, at Layout::kQ) while tile 0 is in flight;
// load_k(t) / load_v(t) issue the cp.async copies of tile t's K / V into Layout::k_stage / v_stage
// (no commit). row_pos: the positions of this thread's two rows (16 w + l / 4 and + 8 of its
// warpgroup; -1 for a padding row); a row sees keys [0, its position]. The softmax multiplies q.k by
// scale_log2 (log2(e) / sqrt(d)). o and l_run: O and the rows' partial sums over this thread's
// columns (quads add them up), unnormalized.
template <int kGroups, int kKeys, int kQkBlocks, class LoadQ, class LoadK, class LoadV>
__device__ __forceinline__ void attend(uint32_t base, int g, int num_tiles, float scale_log2, LoadQ load_q,
                                       LoadK load_k, LoadV load_v, const int (&row_pos)[2], float (&o)[64],
                                       float (&l_run)[2]) {
  using L = Layout<kGroups, kKeys, kQkBlocks>;
  constexpr int kS = L::kScores;
  const int c = int(threadIdx.x % 4), min_pos = min(row_pos[0], row_pos[1]);
  load_k(0);
  wgmma::cp_async_commit();
  load_q();
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.0f;
  uint32_t p[kKeys / 16][4];  // the previous tile's P
  float m_run[2] = {-INFINITY, -INFINITY};
  l_run[0] = l_run[1] = 0.0f;
  const uint32_t q_base = base + L::kQ + uint32_t(g * 64 * 128);

  auto load_step = [&](int t) {
    __syncthreads();  // every warpgroup is past step t - 1's products
    if (t + 1 < num_tiles) load_k(t + 1);
    if (t < num_tiles) load_v(t);
    wgmma::cp_async_commit();
    wgmma::cp_async_wait<1>();  // K_t and V_{t-1}
    wgmma::fence_proxy_async();
    __syncthreads();
  };
  auto issue_s = [&](int t, float (&s)[kS]) {
    const uint32_t k_base = L::k_stage(base, t);
    wgmma::fence_operands(s);
    wgmma::fence();
#pragma unroll
    for (int ks = 0; ks < kQkBlocks * 4; ++ks) {
      const uint32_t a = q_base + (ks / 4) * L::kQBlock + (ks % 4) * 32;
      const uint32_t b = k_base + (ks / 4) * L::kKBlock + (ks % 4) * 32;
      ScoreOps<kKeys>::mma(s, wgmma::desc_kmajor_sw128(a), wgmma::desc_kmajor_sw128(b), ks > 0 ? 1 : 0);
    }
    wgmma::commit();
  };
  auto issue_pv = [&](int t) {
    const uint32_t v_base = L::v_stage(base, t);
    wgmma::fence_operands(o);
    wgmma::fence();
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk)
      wgmma::wgmma_m64n128k16_bf16_rs_nmajor(o, p[kk], wgmma::desc_nmajor_sw128(v_base + kk * 16 * 128, L::kVBlock), 1);
    wgmma::commit();
  };
  // The online softmax of S_t in place (probabilities, unrounded), corr: O's rescale per row half.
  auto softmax = [&](int t, float (&s)[kS], float (&corr)[2]) {
    const int kbase = t * kKeys;
    if (kbase + kKeys - 1 > min_pos) {  // the tile reaches past a row's position: the causal mask
#pragma unroll
      for (int n = 0; n < kKeys / 8; ++n)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (kbase + 8 * n + 2 * c + (e & 1) > row_pos[e >> 1]) s[4 * n + e] = -INFINITY;
    }
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      float mx = -INFINITY;
#pragma unroll
      for (int n = 0; n < kKeys / 8; ++n) mx = fmaxf(mx, fmaxf(s[4 * n + 2 * half], s[4 * n + 2 * half + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(m_run[half], mx * scale_log2);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // a row masked so far: p = 0, no NaN
      corr[half] = fast_exp2(m_run[half] - m_use);
      m_run[half] = m_new;
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < kKeys / 8; ++n) {
        s[4 * n + 2 * half] = fast_exp2(fmaf(s[4 * n + 2 * half], scale_log2, -m_use));
        s[4 * n + 2 * half + 1] = fast_exp2(fmaf(s[4 * n + 2 * half + 1], scale_log2, -m_use));
        sum += s[4 * n + 2 * half] + s[4 * n + 2 * half + 1];
      }
      l_run[half] = l_run[half] * corr[half] + sum;
    }
  };

  {  // step 0: S_0 only (O is zero, nothing to rescale)
    load_step(0);
    float s[kS], corr[2];
    issue_s(0, s);
    wgmma::wait<0>();
    wgmma::fence_operands(s);
    softmax(0, s, corr);
    pack_p<kKeys>(s, p);
  }
  for (int t = 1; t < num_tiles; ++t) {
    load_step(t);
    float s[kS], corr[2];
    issue_s(t, s);
    issue_pv(t - 1);
    wgmma::wait<1>();  // S_t; P_{t-1} V_{t-1} may still run
    wgmma::fence_operands(s);
    softmax(t, s, corr);
    wgmma::wait<0>();  // O and P are free again
    wgmma::fence_operands(o);
    rescale_rows(o, corr[0], corr[1]);
    pack_p<kKeys>(s, p);
  }
  load_step(num_tiles);  // V of the last tile
  issue_pv(num_tiles - 1);
  wgmma::wait<0>();
  wgmma::fence_operands(o);
}

}  // namespace troupe::kernels::flash_wgmma
