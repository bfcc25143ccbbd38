#include <cuda_bf16.h>
#include <cub/block/block_scan.cuh>

#include <cstdlib>
#include <string_view>

#include "kernels/fp8_gemv_f16_tiles.cuh"
#include "kernels/moe_f16_gemv.hpp"
#include "kernels/moe_grouped_gemv.hpp"
#include "kernels/moe_rows_gemv.hpp"

// moe_f16_gemv.hpp says what; fp8_gemv_f16_tiles.cuh holds the tile loop. Scales: x_perm holds
// x * 2^64, so the sums hold y * 2^64 and leave times 2^-64; act_perm gets bf16(silu(g) u * 2^64)
// from the real g and u, as moe_rows_gemv.cu's epilogue forms it.
namespace troupe::kernels {
namespace {

using namespace f16_tiles;

constexpr float kUnshift = 1.0f / kMoeXShift;  // 2^-64
constexpr int kGateColumns = 8;                // act columns of a gate_up tile

// The Out policy of gate_up [2 inter, k] (fp8_gemv_f16_tiles.cuh's Out contract): tile r holds gate
// rows 8 r .. 8 r + 7 (half 0) and their up rows inter + 8 r .. (half 1), so the lane with row g's
// sums writes act column 8 r + g (tokens 2t, 2t + 1): bf16(silu(g) u 2^64) from the real g and u
// (the sums times 2^-64), mlp_activation's formula g / (1 + e^-g) * u.
struct SiluOut {
  static constexpr bool kHalvesShareScale = false;  // gate and up rows lie in different 128-row blocks
  uint16_t* act;
  int64_t act_stride;
  int inter;
  __device__ int num_tiles() const { return inter / kGateColumns; }
  __device__ int base_row(int tile, int g) const { return tile * kGateColumns + g; }  // the gate row
  __device__ int weight_row(int base, int half) const { return half * inter + base; }
  __device__ int scale_block(int tile, int half) const {
    return (half * inter + tile * kGateColumns) / int(kFp8BlockSize);
  }
  __device__ void store(int tile, int g, int t, int m, const float (&total)[4]) const {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const int tok = 2 * t + j;
      if (tok >= m) continue;
      const float a = total[j] * kUnshift, b = total[2 + j] * kUnshift;  // gate, up
      const __nv_bfloat16 v = __float2bfloat16_rn(a / (1.0f + expf(-a)) * b * kMoeXShift);
      act[int64_t(tok) * act_stride + tile * kGateColumns + g] = *reinterpret_cast<const uint16_t*>(&v);
    }
  }
};

// Where block row blockIdx.y works (chunk > 1): the u-th unit of the active list, each active
// expert cut into units of at most `chunk` consecutive positions, in list order; false (the same
// for every thread) when u is past the last unit. Every thread takes a run of up to three list
// entries (the list holds at most 768: kMoeGroupedMaxExperts + the shared expert), a block scan
// (cub) counts the units before each run, and the thread whose run holds u says where it lies.
__device__ bool find_unit(const int32_t* __restrict__ active_begin, int num, int chunk, int u, int* entry,
                          int* p_begin, int* p_end) {
  using Scan = cub::BlockScan<int, kThreads, cub::BLOCK_SCAN_WARP_SCANS>;
  __shared__ typename Scan::TempStorage scan;
  __shared__ int found[3];
  const int tid = int(threadIdx.x);
  const int per = (num + kThreads - 1) / kThreads;
  const int i0 = min(tid * per, num), i1 = min(i0 + per, num);
  int mine = 0;
  for (int i = i0; i < i1; ++i) mine += (__ldcg(active_begin + i + 1) - __ldcg(active_begin + i) + chunk - 1) / chunk;
  int first = 0, total = 0;  // this thread's first unit; all of them
  Scan(scan).ExclusiveSum(mine, first, total);
  if (u >= first && u < first + mine) {
    for (int i = i0; i < i1; ++i) {
      const int b = __ldcg(active_begin + i), e = __ldcg(active_begin + i + 1), units = (e - b + chunk - 1) / chunk;
      if (u < first + units) {
        found[0] = i, found[1] = b + (u - first) * chunk, found[2] = min(e, b + (u - first + 1) * chunk);
        break;
      }
      first += units;
    }
  }
  __syncthreads();
  if (u >= total) return false;
  *entry = found[0], *p_begin = found[1], *p_end = found[2];
  return true;
}

// Block (x, y): with chunk 1, active expert y, its positions one at a time; with chunk > 1, unit y
// (find_unit): one pass over the unit's positions, the weights read once for all of them. out_rows:
// inter (SILU) or n; out_stride: act_stride or n.
// 112 registers at three ring buffers (the loop's comment says why), 16 more for a fourth.
template <bool SILU, int kRing>
__global__ void __maxnreg__(kRingRegisters<kRing> + 16)
    moe_f16_kernel(const uint16_t* __restrict__ x_perm, int64_t x_stride, const uint8_t* const* __restrict__ w_of,
                   const float* const* __restrict__ scale_of, const int32_t* __restrict__ num_active,
                   const int32_t* __restrict__ active_expert, const int32_t* __restrict__ active_begin,
                   void* __restrict__ out_raw, int64_t out_stride, int out_rows, int k, int num_kb, int sharing,
                   int chunk) {
  allow_dependents();  // the next kernel may become resident (gemv_tiles signals again, later: no-op)
  // The expert list and x_perm come from the kernels before: nothing, not even W, is known earlier.
  wait_for_prerequisites();
  // The active list through L2 (ld.global.cg), never a line an earlier kernel left in this SM's L1:
  // a guard while go70-72's fault (moe_f16_gemv.hpp) is not understood.
  int j = int(blockIdx.y), p_begin = 0, p_end = 0;
  const int num = __ldcg(num_active);
  if (chunk > 1) {
    if (!find_unit(active_begin, num, chunk, int(blockIdx.y), &j, &p_begin, &p_end)) return;  // whole block
  } else {
    if (j >= num) return;  // the whole block, before any barrier
    p_begin = __ldcg(active_begin + j), p_end = __ldcg(active_begin + j + 1);
  }
  const int expert = __ldcg(active_expert + j);
  const uint8_t* w = w_of[expert];
  const float* w_scale = scale_of[expert];
  for (int p = p_begin; p < p_end; p += chunk) {
    if (p > p_begin) __syncthreads();  // every warp is done with the previous pass's x
    const int m = min(chunk, p_end - p);
    if constexpr (SILU) {
      uint16_t* act = static_cast<uint16_t*>(out_raw) + int64_t(p) * out_stride;
      // act columns [inter, act_stride) are zero: the grouped down kernel reads them
      if (blockIdx.x == 0)
        for (int i = int(threadIdx.x); i < m * int(out_stride - out_rows); i += int(blockDim.x))
          act[int64_t(i / int(out_stride - out_rows)) * out_stride + out_rows + i % int(out_stride - out_rows)] = 0;
      gemv_tiles<kRing>(x_perm + int64_t(p) * x_stride, int(x_stride), w, w_scale, m, k, num_kb, sharing,
                        SiluOut{act, out_stride, out_rows});
    } else {
      gemv_tiles<kRing>(x_perm + int64_t(p) * x_stride, int(x_stride), w, w_scale, m, k, num_kb, sharing,
                        RowTiles<float, true>{{out_rows}, static_cast<float*>(out_raw) + int64_t(p) * out_stride,
                                              kUnshift});
    }
  }
}

// Positions a pass takes at K = k: the most (up to 8, the mma's N) whose staged x leaves room for
// two CTAs an SM under the decode carveout (kernels/smem_carveout.hpp: 50%, about 114 KB of an
// SM's shared memory, each CTA also holding gemv_tiles' 8 KB of sums). R1: 3 at 7,168, 8 at 2,048.
constexpr size_t kStagedBudget = 48 << 10;
int64_t moe_f16_chunk(int64_t k) {
  int64_t chunk = 8;
  while (chunk > 1 && staged_bytes(chunk, k) > kStagedBudget) --chunk;
  return chunk;
}

// How many launches the CTAs of one unit's launch are shared with (plan_f16's `share`: the unit
// takes 2 x SMs / share CTAs). By default the experts': the CTAs spread over max_active units,
// which assumes the units past them few, as they are up to 8 tokens. A wide batch has more units
// than resident CTAs: R1 at 64 tokens gives gate_up (3 positions a unit at K 7,168) up to 449
// units, about 283 with random routing (my arithmetic: 221 experts touched, ~40 with 4 or more
// tokens, the shared expert's 22), against 264 resident CTAs, so one CTA a unit leaves a second
// wave of whole experts streamed by lone CTAs. Stop 41's b64 trace fits that: gate_up took 2.47 ms
// for about 6.5 GB of weights, down (8 positions a unit: about 230 units, one wave) 0.92 ms for
// 3.3 GB, 0.58 against 0.78 of the H200's bandwidth. Where the units' bound `rows` passes the
// resident CTAs, each unit takes ceil(4 x resident / rows) CTAs instead, so the last wave holds
// pieces of experts: 3 for gate_up at 64 tokens, and 4 for down, whose bound (329) passes too
// though its units fit one wave (then only smaller pieces; whether that costs is for the A/B).
// Assumes plan_f16's two CTAs an SM. TROUPE_MOE_F16_CROWDED=0 keeps max_active (A/B runs; read at
// each call). Not yet timed on the GPU (stop 43 had none).
cudaError_t units_share(int64_t chunk, int64_t rows, int64_t* share) {
  const char* env = std::getenv("TROUPE_MOE_F16_CROWDED");
  if (chunk <= 1 || (env && std::string_view(env) == "0")) return cudaSuccess;
  int num_sms = 1;
  if (cudaError_t err = current_sm_count(&num_sms); err != cudaSuccess) return err;
  const int64_t resident = 2 * int64_t(num_sms);  // plan_f16's two CTAs an SM
  if (const int64_t per_unit = moe_f16_crowded_ctas(resident, rows); per_unit > 0)
    *share = std::max<int64_t>(1, resident / per_unit);
  return cudaSuccess;
}

template <bool SILU>
cudaError_t launch_moe_f16(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* w,
                           const float* const* w_scale, const int32_t* num_active, const int32_t* active_expert,
                           const int32_t* active_begin, int64_t max_active, int64_t max_positions, int64_t tokens,
                           void* out, int64_t out_stride, int64_t out_rows, int64_t k, cudaStream_t stream) {
  if (max_active == 0) return cudaSuccess;
  if (!moe_one_token_args_valid(x_perm, x_stride, w, w_scale, num_active, active_expert, active_begin, max_active,
                                out, out_rows, k) ||
      (SILU && out_rows % kGateColumns != 0) || max_positions < 0 || max_positions > INT32_MAX || tokens < 1)
    return cudaErrorInvalidValue;
  const auto kernel = ring_buffers() == 4 ? moe_f16_kernel<SILU, 4> : moe_f16_kernel<SILU, 3>;
  const int64_t tiles = SILU ? out_rows / kGateColumns : (out_rows + kTileRows - 1) / kTileRows;
  // Several tokens: units of `chunk` positions, at most max_active + max_positions / chunk of them
  // (an expert's units past its first hold `chunk` positions each).
  const int64_t chunk = tokens > 1 ? moe_f16_chunk(k) : 1;
  const int64_t rows = chunk > 1 ? max_active + max_positions / chunk : max_active;
  if (rows > 65535 || (chunk > 1 && max_active > 3 * kThreads)) return cudaErrorInvalidValue;  // find_unit's runs
  // One position a pass with several tokens (K past ~12,000) puts a barrier between gemv_tiles calls,
  // which is safe only while every warp has a K block (gemv_tiles' early return): at least as many
  // blocks as the 8 warps a tile can share. Always so there (94 or more); refused otherwise.
  if (tokens > 1 && chunk == 1 && (k + 127) / 128 < 8) return cudaErrorInvalidValue;
  F16Plan p;
  int64_t share = max_active;
  if (cudaError_t err = units_share(chunk, rows, &share); err != cudaSuccess) return err;
  if (cudaError_t err = plan_f16(reinterpret_cast<const void*>(kernel), chunk, tiles, k, share, &p);
      err != cudaSuccess)
    return err;
  const dim3 grid{unsigned(p.grid), unsigned(rows)};
  // TROUPE_MOE_UNITS_PDL=1 launches the units as programmatic dependents too: the experiment that
  // tells whether reading the active list through L2 (__ldcg, added after go72) cures the fault
  // below (read once).
  static const bool units_dependent = [] {
    const char* env = std::getenv("TROUPE_MOE_UNITS_PDL");
    return env && std::string_view(env) == "1";
  }();
  if (chunk > 1 && !units_dependent) {
    // Units: a plain launch, as the grouped kernels are. As programmatic dependents the DeepSeek
    // demo's decode steps (FP8 experts, 2 to 8 tokens) failed on the H200 with illegal addresses,
    // while the same steps passed under compute-sanitizer (memcheck, racecheck and initcheck found
    // nothing) and with TROUPE_NO_PDL=1 (one H200 session, go70 to go72): an ordering the unit
    // search's reads of the active list do not survive, not yet understood. The launch gap (a few
    // microseconds a layer) is small beside the experts' weights at 2 or more tokens.
    apply_dependent_smem_carveout(reinterpret_cast<const void*>(kernel));
    kernel<<<grid, dim3(kThreads), p.smem, stream>>>(x_perm, x_stride, w, w_scale, num_active, active_expert,
                                                     active_begin, out, out_stride, int(out_rows), int(k),
                                                     int(fp8_num_blocks(k)), p.sharing, int(chunk));
    return cudaGetLastError();
  }
  return launch_dependent(kernel, grid, dim3(kThreads), p.smem, stream, x_perm, x_stride, w, w_scale, num_active,
                          active_expert, active_begin, out, out_stride, int(out_rows), int(k), int(fp8_num_blocks(k)),
                          p.sharing, int(chunk));
}

}  // namespace

bool moe_f16_supported(int64_t hidden, int64_t inter) {
  return moe_rows_supported(hidden) && moe_rows_supported(inter) && inter % kGateColumns == 0;
}

cudaError_t launch_moe_f16_gate_up_silu(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* gate_up,
                                        const float* const* gate_up_scale, const int32_t* num_active,
                                        const int32_t* active_expert, const int32_t* active_begin,
                                        int64_t max_active, int64_t max_positions, int64_t tokens,
                                        uint16_t* act_perm, int64_t act_stride, int64_t inter, int64_t k,
                                        cudaStream_t stream) {
  if (inter < 1 || act_stride < moe_perm_stride(inter)) return cudaErrorInvalidValue;
  return launch_moe_f16<true>(x_perm, x_stride, gate_up, gate_up_scale, num_active, active_expert, active_begin,
                              max_active, max_positions, tokens, act_perm, act_stride, inter, k, stream);
}

cudaError_t launch_moe_f16_gemv(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* w,
                                const float* const* w_scale, const int32_t* num_active, const int32_t* active_expert,
                                const int32_t* active_begin, int64_t max_active, int64_t max_positions, int64_t tokens,
                                float* y_perm, int64_t n, int64_t k, cudaStream_t stream) {
  return launch_moe_f16<false>(x_perm, x_stride, w, w_scale, num_active, active_expert, active_begin, max_active,
                               max_positions, tokens, y_perm, n, n, k, stream);
}

}  // namespace troupe::kernels
