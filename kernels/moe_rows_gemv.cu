#include <cuda_bf16.h>

#include <algorithm>

#include "kernels/dependent_launch.cuh"
#include "kernels/fp8_stream.cuh"
#include "kernels/moe_grouped_gemv.hpp"
#include "kernels/moe_rows_gemv.hpp"
#include "kernels/sm_count.hpp"

// The load layout and the scale math are fp8_gemv_rows.cu's (its header comment says why); what
// differs here: the grid's y is the active expert (its pointers and its x_perm row are read on the
// device, after the earlier kernels are done), x_perm / act_perm already hold x * 2^64 (staged as
// they are), and gate_up items pair gate and up rows so silu * up is computed in the epilogue.
// As there, rows shorter than kShareFromK (R1's down: 2,048) are too short for a block's
// warps to share: each warp owns its items (no barrier); longer ones (gate_up: 7,168) are shared.
// Scales: x * 2^64 times w * 2^-120 (fp8_stream.cuh: e4m3_shifted) is x w 2^-56 per product; each
// K block's sum is promoted by w_scale * 2^56, so the sums are the real values. act_perm gets
// bf16(silu(g) u * 2^64), y_perm the real sums: 2^64 enters once (x_perm) and leaves once (here).
namespace troupe::kernels {
namespace {

using fp8_stream::dot16_shifted;
using fp8_stream::load_stream16;
using fp8_stream::zero4;

constexpr int kChunkBytes = 512;  // a warp's load instruction: 16 bytes a lane
constexpr int kMaxWarps = 8;  // fp8_gemv_rows.cu's first version: 12 left one block of 12 warps per SM
// Below this K a warp owns whole items (a block's warps sharing so few chunks lost to the
// tensor-core kernel in fp8_gemv_rows.cu's first version: K = 1,536 at 0.30 of HBM, against 0.38).
constexpr int64_t kShareFromK = 4096;
constexpr int kLoadsPerLane = 8;  // 16-byte weight loads a lane keeps in flight (ROWS x STEP chunks)
constexpr float kPromote = 72057594037927936.0f;  // 2^56 = 2^120 / 2^64

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float bf16_lo(uint32_t pair) { return __uint_as_float(pair << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t pair) { return __uint_as_float(pair & 0xffff0000u); }

__device__ __forceinline__ uint16_t to_bf16_bits(float v) {
  const __nv_bfloat16 b = __float2bfloat16_rn(v);
  return *reinterpret_cast<const uint16_t*>(&b);
}

// Output t of an item at position p from its row sums: plain, y row item * ROWS + t = a (rows past
// n not stored); SILU, act column item * C + t = bf16(silu(a) * b * 2^64), a the gate, b the up sum.
template <int ROWS, bool SILU>
__device__ __forceinline__ void store_item(void* out_raw, int64_t out_stride, int out_rows, int p, int item, int t,
                                           float a, float b) {
  if constexpr (SILU) {
    const float act = a / (1.0f + expf(-a)) * b;
    static_cast<uint16_t*>(out_raw)[int64_t(p) * out_stride + item * (ROWS / 2) + t] = to_bf16_bits(act * kMoeXShift);
  } else {
    const int row = item * ROWS + t;
    if (row < out_rows) static_cast<float*>(out_raw)[int64_t(p) * out_stride + row] = a;
  }
}

// Block (x, j): active expert j. An item is ROWS weight rows: plain, rows item * ROWS + r (out_rows
// = n, the output's rows); SILU, the C = ROWS / 2 act columns item * C + c from gate rows item * C
// + c and up rows out_rows + item * C + c (out_rows = inter; C divides inter, so the up rows share
// one 128-row scale row as the gate rows do). Shared (!OWN): the block takes items x, x + gridDim.x,
// ... and warp w chunks w, w + warps, ... of each; OWN: warp w of the block takes items x * warps +
// w, + gridDim.x * warps, ... whole. STEP chunks per step (ROWS x STEP = 8 loads in flight).
template <int ROWS, int STEP, bool SILU, bool OWN>
__global__ void __launch_bounds__(kMaxWarps * 32, 2)
    moe_rows_kernel(const uint16_t* __restrict__ x_perm, int64_t x_stride, const uint8_t* const* __restrict__ w_of,
                    const float* const* __restrict__ scale_of, const int32_t* __restrict__ num_active,
                    const int32_t* __restrict__ active_expert, const int32_t* __restrict__ active_begin,
                    void* __restrict__ out_raw, int64_t out_stride, int out_rows, int k, int num_items) {
  static_assert(ROWS * STEP == kLoadsPerLane, "a lane keeps kLoadsPerLane loads in flight");
  constexpr int C = SILU ? ROWS / 2 : ROWS;  // outputs per item
  extern __shared__ float4 x_smem[];         // [num_chunks][4][32] float4: lane l's q-th at q * 32 + l
  __shared__ float sums[OWN ? 1 : 2][OWN ? 1 : kMaxWarps][ROWS];
  const int warps = int(blockDim.x / 32), warp = int(threadIdx.x / 32), lane = int(threadIdx.x % 32);
  const int num_chunks = (k + kChunkBytes - 1) / kChunkBytes, num_kb = (k + 127) / 128;
  // The warps that share an item, this warp's place among them, and the items it takes.
  const int sharing = OWN ? 1 : warps, member = OWN ? 0 : warp, stride = STEP * sharing;
  const int first_item = OWN ? int(blockIdx.x) * warps + warp : int(blockIdx.x);
  const int item_step = OWN ? int(gridDim.x) * warps : int(gridDim.x);
  allow_dependents();  // the next kernel may become resident; it waits for this one's writes
  // The expert list and x_perm come from the kernels before: nothing, not even W, is known earlier.
  wait_for_prerequisites();
  const int j = int(blockIdx.y);
  if (j >= *num_active) return;  // the whole block, before any barrier
  const int expert = active_expert[j], p_begin = active_begin[j], p_end = active_begin[j + 1];
  const uint8_t* w = w_of[expert];
  const float* w_scale = scale_of[expert];

  auto w_row = [&](int item, int r) -> int {
    if constexpr (SILU) return (r < C ? 0 : out_rows) + item * C + r % C;
    else return min(item * ROWS + r, out_rows - 1);  // rows past n: loaded (in bounds), never stored
  };
  // The weights of chunks c0, c0 + sharing, ... (STEP of them) of item `item`; zeros past k.
  uint4 next[STEP][ROWS];
  auto load_step = [&](int item, int c0) {
#pragma unroll
    for (int u = 0; u < STEP; ++u) {
      const int c = c0 + u * sharing, byte = c * kChunkBytes + 16 * lane;
      const bool valid = c < num_chunks && byte < k;
#pragma unroll
      for (int r = 0; r < ROWS; ++r) next[u][r] = load_stream16(w + int64_t(w_row(item, r)) * k + (valid ? byte : 0), valid);
    }
  };

  int parity = 0;
  for (int p = p_begin; p < p_end; ++p) {  // one position in the one-token batches this path is for
    if (p > p_begin) __syncthreads();      // every warp is done with the previous position's x
    if (first_item < num_items && member < num_chunks) load_step(first_item, member);
    // x_perm row p (bf16 * 2^64, 16-byte aligned rows, k % 16 == 0) as fp32, zeros past k: a
    // thread takes 8 values, elements 16 l + 4 q + e of chunk c go to float4 c * 128 + q * 32 + l.
    const uint16_t* x_row = x_perm + int64_t(p) * x_stride;
    for (int i = 8 * int(threadIdx.x); i < num_chunks * kChunkBytes; i += 8 * int(blockDim.x)) {
      const uint4 v = i < k ? __ldg(reinterpret_cast<const uint4*>(x_row + i)) : zero4();
      const int c = i / kChunkBytes, l = (i % kChunkBytes) / 16, q = (i % 16) / 4;  // q: 0 or 2
      x_smem[c * 128 + q * 32 + l] = make_float4(bf16_lo(v.x), bf16_hi(v.x), bf16_lo(v.y), bf16_hi(v.y));
      x_smem[c * 128 + (q + 1) * 32 + l] = make_float4(bf16_lo(v.z), bf16_hi(v.z), bf16_lo(v.w), bf16_hi(v.w));
    }
    if constexpr (SILU) {  // act columns [inter, act_stride) are zero: the grouped down kernel reads them
      uint16_t* act = static_cast<uint16_t*>(out_raw) + int64_t(p) * out_stride;
      if (blockIdx.x == 0)
        for (int64_t col = out_rows + int(threadIdx.x); col < out_stride; col += blockDim.x) act[col] = 0;
    }
    __syncthreads();

    for (int item = first_item; item < num_items; item += item_step, parity ^= 1) {
      // Rows r < C (gate, or every row of a plain item) use scale_a, the up rows scale_b.
      const float* scale_a = w_scale + int64_t(item * C / 128) * num_kb;
      const float* scale_b = SILU ? w_scale + int64_t((out_rows + item * C) / 128) * num_kb : scale_a;
      float acc[ROWS];
#pragma unroll
      for (int r = 0; r < ROWS; ++r) acc[r] = 0.0f;
      for (int c0 = member; c0 < num_chunks; c0 += stride) {
        uint4 cur[STEP][ROWS];
#pragma unroll
        for (int u = 0; u < STEP; ++u)
#pragma unroll
          for (int r = 0; r < ROWS; ++r) cur[u][r] = next[u][r];
        // The next step's loads (or the next item's first) go out before this step's math.
        if (c0 + stride < num_chunks) {
          load_step(item, c0 + stride);
        } else if (item + item_step < num_items) {
          load_step(item + item_step, member);
        }
#pragma unroll
        for (int u = 0; u < STEP; ++u) {
          const int c = c0 + u * sharing;
          if (c >= num_chunks) break;
          const int kb = min(4 * c + lane / 8, num_kb - 1);  // the K block of bytes 512 c + 16 lane
          const float sa = __ldg(scale_a + kb) * kPromote;
          const float sb = SILU ? __ldg(scale_b + kb) * kPromote : sa;
          float4 xs[4];
#pragma unroll
          for (int q = 0; q < 4; ++q) xs[q] = x_smem[c * 128 + q * 32 + lane];
#pragma unroll
          for (int r = 0; r < ROWS; ++r) acc[r] = fmaf(dot16_shifted(cur[u][r], xs), r < C ? sa : sb, acc[r]);
        }
      }
      if constexpr (OWN) {  // every lane holds the sums after the butterfly; lane t < C writes output t
        float total[ROWS];
#pragma unroll
        for (int r = 0; r < ROWS; ++r) total[r] = warp_sum(acc[r]);
        float a = total[0], b = total[C % ROWS];  // selected with constant indices: no local memory
#pragma unroll
        for (int t = 1; t < C; ++t)
          if (lane == t) a = total[t], b = total[(C + t) % ROWS];
        if (lane < C) store_item<ROWS, SILU>(out_raw, out_stride, out_rows, p, item, lane, a, b);
      } else {
        // sums[parity] was last read two items ago, before the barrier of the item in between.
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
          const float total = warp_sum(acc[r]);
          if (lane == 0) sums[parity][warp][r] = total;
        }
        __syncthreads();
        const int t = int(threadIdx.x);
        if (t < C) {  // the warps' partials added in warp order (deterministic)
          float a = 0.0f, b = 0.0f;
          for (int v = 0; v < warps; ++v) a += sums[parity][v][t], b += sums[parity][v][(C + t) % ROWS];
          store_item<ROWS, SILU>(out_raw, out_stride, out_rows, p, item, t, a, b);
        }
      }
    }
  }
}

using RowsKernel = void (*)(const uint16_t*, int64_t, const uint8_t* const*, const float* const*, const int32_t*,
                            const int32_t*, const int32_t*, void*, int64_t, int, int, int);

template <bool SILU, bool OWN>
RowsKernel kernel_for(int rows) {
  switch (rows) {
    case 8: return moe_rows_kernel<8, 1, SILU, OWN>;
    case 4: return moe_rows_kernel<4, 2, SILU, OWN>;
    case 2: return moe_rows_kernel<2, 4, SILU, OWN>;
    default:
      if constexpr (SILU) return nullptr;  // a gate_up item has at least one gate and one up row
      else return moe_rows_kernel<1, 8, false, OWN>;
  }
}

// Warps per block: the count in 1..kMaxWarps (at most the chunk count) that splits the chunks most
// evenly, the largest among equals (fp8_gemv_rows.cu's rule).
int pick_warps(int num_chunks) {
  int best = 1;
  double best_balance = 0.0;
  for (int w = 1; w <= std::min(kMaxWarps, num_chunks); ++w) {
    const int per_warp = (num_chunks + w - 1) / w;
    const double balance = double(num_chunks) / double(w * per_warp);
    if (balance >= best_balance - 1e-9) best = w, best_balance = balance;
  }
  return best;
}

int floor_pow2(int v) {
  int p = 1;
  while (p * 2 <= v) p *= 2;
  return p;
}

// out_rows: n (plain) or inter (SILU); out_stride: n or act_stride.
template <bool SILU>
cudaError_t launch_rows(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* w, const float* const* w_scale,
                        const int32_t* num_active, const int32_t* active_expert, const int32_t* active_begin,
                        int64_t max_active, void* out, int64_t out_stride, int64_t out_rows, int64_t k,
                        cudaStream_t stream) {
  if (max_active == 0) return cudaSuccess;
  if (!moe_one_token_args_valid(x_perm, x_stride, w, w_scale, num_active, active_expert, active_begin, max_active,
                                out, out_rows, k))
    return cudaErrorInvalidValue;
  // Loads in flight: a warp's STEP chunks of each of an item's ROWS rows, STEP at most the chunks a
  // warp has (more would stay empty), ROWS = 8 / STEP. gate_up: C = ROWS / 2 columns, halved until
  // C divides inter (so no item's up rows cross a 128-row scale boundary).
  const int num_chunks = int((k + kChunkBytes - 1) / kChunkBytes);
  const bool own = k < kShareFromK;
  const int warps = own ? kMaxWarps : pick_warps(num_chunks);
  const int per_warp = own ? num_chunks : (num_chunks + warps - 1) / warps;
  int rows = kLoadsPerLane / floor_pow2(std::min(SILU ? kLoadsPerLane / 2 : kLoadsPerLane, per_warp));
  if (SILU)
    while (out_rows % (rows / 2) != 0) rows /= 2;
  const int64_t num_items = SILU ? out_rows / (rows / 2) : (out_rows + rows - 1) / rows;
  const RowsKernel kernel = own ? kernel_for<SILU, true>(rows) : kernel_for<SILU, false>(rows);
  const size_t smem = size_t(num_chunks) * kChunkBytes * sizeof(float);
  int blocks = 0;
  // The limit raised to the largest x (kMoeRowsMaxK) where the default 48 KB does not hold it.
  const size_t largest_x = size_t(kMoeRowsMaxK) * sizeof(float);
  if (cudaError_t err = resident_blocks_per_sm(reinterpret_cast<const void*>(kernel), warps * 32, smem, &blocks, largest_x);
      err != cudaSuccess)
    return err;
  if (blocks <= 0) return cudaErrorInvalidConfiguration;
  // G blocks an expert: the blocks that fit the GPU at once over max_active experts, then as few
  // as take the same number of rounds of items (a block takes `takers` items a round).
  const int64_t takers = own ? warps : 1, max_grid = (num_items + takers - 1) / takers;
  int num_sms = 1;
  if (cudaError_t err = current_sm_count(&num_sms); err != cudaSuccess) return err;
  int64_t grid_x = std::clamp<int64_t>(int64_t(blocks) * num_sms / max_active, 1, max_grid);
  const int64_t rounds = (num_items + grid_x * takers - 1) / (grid_x * takers);
  grid_x = (num_items + rounds * takers - 1) / (rounds * takers);
  const dim3 grid{unsigned(grid_x), unsigned(max_active)}, block{unsigned(warps * 32)};
  return launch_dependent(kernel, grid, block, smem, stream, x_perm, x_stride, w, w_scale, num_active, active_expert,
                          active_begin, out, out_stride, int(out_rows), int(k), int(num_items));
}

}  // namespace

cudaError_t launch_moe_rows_gate_up_silu(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* gate_up,
                                         const float* const* gate_up_scale, const int32_t* num_active,
                                         const int32_t* active_expert, const int32_t* active_begin,
                                         int64_t max_active, uint16_t* act_perm, int64_t act_stride, int64_t inter,
                                         int64_t k, cudaStream_t stream) {
  if (inter < 1 || act_stride < moe_perm_stride(inter)) return cudaErrorInvalidValue;
  return launch_rows<true>(x_perm, x_stride, gate_up, gate_up_scale, num_active, active_expert, active_begin,
                           max_active, act_perm, act_stride, inter, k, stream);
}

cudaError_t launch_moe_rows_gemv(const uint16_t* x_perm, int64_t x_stride, const uint8_t* const* w,
                                 const float* const* w_scale, const int32_t* num_active, const int32_t* active_expert,
                                 const int32_t* active_begin, int64_t max_active, float* y_perm, int64_t n, int64_t k,
                                 cudaStream_t stream) {
  return launch_rows<false>(x_perm, x_stride, w, w_scale, num_active, active_expert, active_begin, max_active, y_perm,
                            n, n, k, stream);
}

}  // namespace troupe::kernels
