#include <cuda_bf16.h>

#include <algorithm>

#include "kernels/dependent_launch.cuh"
#include "kernels/fp8_block_gemm.hpp"
#include "kernels/fp8_gemv_rows.hpp"
#include "kernels/fp8_quant.hpp"
#include "kernels/fp8_stream.cuh"
#include "kernels/sm_count.hpp"

// Layout of one launch:
//   - an "item" is R consecutive rows of W (R = 4, 2 or 1; R divides 128, so an item's rows share
//     one scale row); a "chunk" is 512 bytes of a row, lane l's 16 bytes at 16 l;
//   - items are shared by the warps of a block, warp j taking chunks j, j + warps, ... (blocks take
//     items blockIdx.x, + gridDim.x, ...), or owned by single warps (all of a row's chunks; items
//     strided over every warp of the grid, no barrier); the plan picks R, the mode and the warps per
//     block that leave the fewest loads on the busiest warp, counting whole rounds of the item-takers
//     resident at once and steps that cannot fill a lane's loads;
//   - a lane keeps 8 16-byte loads in flight (R rows x 8 / R chunks) and issues the next step,
//     or the next item's first, before it works on the current one;
//   - x is read per chunk from global memory (L1-resident: every item of a block reads the same
//     x), rounded to bf16 and scaled by 2^64; the weights are widened to fp32 times 2^-120 with
//     integer operations (fp8_stream.cuh), so products are x w 2^-56 and stay in fp32's range;
//     each K block's sum is promoted by w_scale 2^56, as in the tensor-core kernels. (Staging x in
//     shared memory cost each block a serial pass over K before its first product and capped the
//     blocks per SM at large K: R1's dense down, K = 18,432, ran at 0.42 of HBM);
//   - shared items' warp sums meet in shared memory and are added in warp order (deterministic).
namespace troupe::kernels {
namespace {

using fp8_stream::dot16_shifted;
using fp8_stream::load_stream16;

constexpr int kChunkBytes = 512;
constexpr int kMaxWarps = 8;
constexpr int kLoadsPerLane = 8;
constexpr float kXShift = 18446744073709551616.0f;    // 2^64
constexpr float kPromoteShift = 72057594037927936.0f;  // 2^56 = 2^120 / 2^64

// x[k0 .. k0 + 16) rounded to bf16 and times 2^64 (zeros when !valid), in the order dot16_shifted
// takes them. k0 is a multiple of 16 and x 16-byte aligned.
__device__ __forceinline__ void load_x16(const uint16_t* x, int64_t k0, bool valid, float4 (&xs)[4]) {
  uint4 v[2] = {make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)};
  if (valid) {
    v[0] = __ldg(reinterpret_cast<const uint4*>(x + k0));
    v[1] = __ldg(reinterpret_cast<const uint4*>(x + k0) + 1);
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint32_t words[4] = {v[h].x, v[h].y, v[h].z, v[h].w};
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      const uint32_t a = words[2 * j], b = words[2 * j + 1];
      xs[2 * h + j] = make_float4(__uint_as_float(a << 16) * kXShift, __uint_as_float(a & 0xffff0000u) * kXShift,
                                  __uint_as_float(b << 16) * kXShift, __uint_as_float(b & 0xffff0000u) * kXShift);
    }
  }
}
__device__ __forceinline__ float bf16_shifted(float v) { return __bfloat162float(__float2bfloat16_rn(v)) * kXShift; }
__device__ __forceinline__ void load_x16(const float* x, int64_t k0, bool valid, float4 (&xs)[4]) {
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    const float4 v = valid ? __ldg(reinterpret_cast<const float4*>(x + k0) + q) : make_float4(0, 0, 0, 0);
    xs[q] = make_float4(bf16_shifted(v.x), bf16_shifted(v.y), bf16_shifted(v.z), bf16_shifted(v.w));
  }
}

__device__ __forceinline__ void store_out(float* p, float v) { *p = v; }
__device__ __forceinline__ void store_out(uint16_t* p, float v) {
  *reinterpret_cast<__nv_bfloat16*>(p) = __float2bfloat16_rn(v);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// OWN: each warp owns its items (rows shorter than 4,096 bytes: too few chunks to share); else the
// block's warps share each item, splitting its chunks.
template <int R, bool OWN, typename XT, typename OT>
__global__ void __launch_bounds__(kMaxWarps * 32)
    fp8_gemv_rows_kernel(const XT* __restrict__ x, const uint8_t* __restrict__ w, const float* __restrict__ w_scale,
                         OT* __restrict__ out, int n, int k, int num_kb, int num_items) {
  constexpr int U = kLoadsPerLane / R;  // chunks per step
  __shared__ float sums[2][kMaxWarps][R];
  const int warps = int(blockDim.x / 32), warp = int(threadIdx.x / 32), lane = int(threadIdx.x % 32);
  const int num_chunks = (k + kChunkBytes - 1) / kChunkBytes;
  // The warps that share an item, this warp's place among them, and the items it takes.
  const int sharing = OWN ? 1 : warps, member = OWN ? 0 : warp, stride = U * sharing;
  const int first_item = OWN ? int(blockIdx.x) * warps + warp : int(blockIdx.x);
  const int item_step = OWN ? int(gridDim.x) * warps : int(gridDim.x);
  allow_dependents();  // the next kernel may become resident and start on its own weights

  // The weights of chunks c0, c0 + sharing, ... (U of them) of item `item`; zeros past k.
  uint4 next[U][R];
  auto load_step = [&](int item, int c0) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = c0 + u * sharing;
      const int64_t byte = int64_t(c) * kChunkBytes + 16 * lane;
      const bool valid = c < num_chunks && byte < k;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int row = min(item * R + r, n - 1);
        next[u][r] = load_stream16(w + int64_t(row) * k + (valid ? byte : 0), valid);
      }
    }
  };
  // Weights are never written by a kernel, so the first step may load before x is ready.
  if (first_item < num_items && member < num_chunks) load_step(first_item, member);
  wait_for_prerequisites();

  int parity = 0;
  for (int item = first_item; item < num_items; item += item_step, parity ^= 1) {
    const float* scale_row = w_scale + int64_t(item * R / kFp8BlockSize) * num_kb;
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r] = 0.0f;
    for (int c0 = member; c0 < num_chunks; c0 += stride) {
      uint4 cur[U][R];
#pragma unroll
      for (int u = 0; u < U; ++u)
#pragma unroll
        for (int r = 0; r < R; ++r) cur[u][r] = next[u][r];
      // The loads of the next step (or of the next item's first) go out before this step's math.
      if (c0 + stride < num_chunks) {
        load_step(item, c0 + stride);
      } else if (item + item_step < num_items) {
        load_step(item + item_step, member);
      }
#pragma unroll
      for (int u = 0; u < U; ++u) {
        const int c = c0 + u * sharing;
        if (c >= num_chunks) break;
        const int64_t k0 = int64_t(c) * kChunkBytes + 16 * lane;
        const float s = __ldg(scale_row + min(4 * c + lane / 8, num_kb - 1)) * kPromoteShift;
        float4 xs[4];
        load_x16(x, k0, k0 < k, xs);
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r] = fmaf(dot16_shifted(cur[u][r], xs), s, acc[r]);
      }
    }
    if constexpr (OWN) {
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float total = warp_sum(acc[r]);
        const int row = item * R + r;
        if (lane == 0 && row < n) store_out(out + row, total);
      }
    } else {
      // sums[parity] was last read two items ago, before the barrier of the item in between.
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float total = warp_sum(acc[r]);
        if (lane == 0) sums[parity][warp][r] = total;
      }
      __syncthreads();
      if (int(threadIdx.x) < R) {
        const int row = item * R + int(threadIdx.x);
        if (row < n) {
          float total = 0.0f;
          for (int j = 0; j < warps; ++j) total += sums[parity][j][threadIdx.x];
          store_out(out + row, total);
        }
      }
    }
  }
}

struct RowsPlan {
  int rows_per_item = 1, warps = 1, grid = 1;
  bool own = false;
};

template <int R, typename XT, typename OT>
const void* kernel_of(bool own) {
  return own ? reinterpret_cast<const void*>(fp8_gemv_rows_kernel<R, true, XT, OT>)
             : reinterpret_cast<const void*>(fp8_gemv_rows_kernel<R, false, XT, OT>);
}

// Loads a warp issues for one item: R rows times its chunks, in whole steps of kLoadsPerLane.
int64_t loads_per_item(int rows, int chunks_per_warp) {
  const int per_step = kLoadsPerLane / rows;
  return int64_t(rows) * ((chunks_per_warp + per_step - 1) / per_step) * per_step;
}

// For each R (4, 2, 1), mode (warps sharing items or owning them) and warps per block (8 down to
// 2 when sharing, 8 down to 1 when owning), the loads on the busiest warp: rounds of the item-takers
// resident at once (blocks when warps share items, warps when they own them; the occupancy of that
// kernel at that block size) times the loads a warp issues per item. The cheapest wins; among equals
// the first met: larger R (fewer reductions, x read once for more rows), sharing, more warps.
template <typename XT, typename OT>
cudaError_t plan_rows(int64_t n, int64_t k, RowsPlan* plan) {
  const int num_chunks = int((k + kChunkBytes - 1) / kChunkBytes);
  int num_sms = 1;
  if (cudaError_t err = current_sm_count(&num_sms); err != cudaSuccess) return err;
  const void* shared[] = {kernel_of<4, XT, OT>(false), kernel_of<2, XT, OT>(false), kernel_of<1, XT, OT>(false)};
  const void* owned[] = {kernel_of<4, XT, OT>(true), kernel_of<2, XT, OT>(true), kernel_of<1, XT, OT>(true)};
  RowsPlan best;
  int64_t best_cost = INT64_MAX;
  for (int i = 0; i < 3; ++i) {
    const int rows = 4 >> i;
    const int64_t items = (n + rows - 1) / rows;
    for (bool own : {false, true}) {
      for (int warps = kMaxWarps; warps >= (own ? 1 : 2); --warps) {
        const int64_t per_item = loads_per_item(rows, own ? num_chunks : (num_chunks + warps - 1) / warps);
        int blocks = 0;
        if (cudaError_t err = resident_blocks_per_sm(own ? owned[i] : shared[i], warps * 32, 0, &blocks);
            err != cudaSuccess)
          return err;
        if (blocks <= 0) continue;
        const int64_t takers_per_block = own ? warps : 1, blocks_at_once = int64_t(blocks) * num_sms;
        const int64_t takers = blocks_at_once * takers_per_block;
        const int64_t cost = (items + takers - 1) / takers * per_item;
        if (cost < best_cost) {
          best_cost = cost;
          const int64_t grid = std::min((items + takers_per_block - 1) / takers_per_block, blocks_at_once);
          best = {rows, warps, int(grid), own};
        }
      }
    }
  }
  if (best_cost == INT64_MAX) return cudaErrorInvalidConfiguration;
  *plan = best;
  return cudaSuccess;
}

template <int R, typename XT, typename OT>
cudaError_t launch_planned(const RowsPlan& p, const XT* x, const uint8_t* w, const float* w_scale, OT* out, int n,
                           int k, cudaStream_t stream) {
  const int items = (n + R - 1) / R, num_kb = int(fp8_num_blocks(k));
  const dim3 grid{unsigned(p.grid)}, block{unsigned(p.warps * 32)};
  const auto kernel = p.own ? fp8_gemv_rows_kernel<R, true, XT, OT> : fp8_gemv_rows_kernel<R, false, XT, OT>;
  return launch_dependent(kernel, grid, block, 0, stream, x, w, w_scale, out, n, k, num_kb, items);
}

template <typename XT, typename OT>
cudaError_t launch_rows(const XT* x, const uint8_t* w, const float* w_scale, OT* out, int64_t n, int64_t k,
                        cudaStream_t stream) {
  if (!x || !w || !w_scale || !out || !fp8_gemv_rows_supported(n, k, x, w)) return cudaErrorInvalidValue;
  RowsPlan p;
  if (cudaError_t err = plan_rows<XT, OT>(n, k, &p); err != cudaSuccess) return err;
  switch (p.rows_per_item) {
    case 4: return launch_planned<4>(p, x, w, w_scale, out, int(n), int(k), stream);
    case 2: return launch_planned<2>(p, x, w, w_scale, out, int(n), int(k), stream);
    default: return launch_planned<1>(p, x, w, w_scale, out, int(n), int(k), stream);
  }
}

}  // namespace

bool fp8_gemv_rows_supported(int64_t n, int64_t k, const void* x, const void* w) {
  return n > 0 && n <= INT32_MAX / 4 && k > 0 && k % 16 == 0 && k <= INT32_MAX - kChunkBytes &&
         reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

cudaError_t launch_fp8_gemv_rows(const float* x, const uint8_t* w, const float* w_scale, float* out, int64_t n,
                                 int64_t k, cudaStream_t stream) {
  return launch_rows(x, w, w_scale, out, n, k, stream);
}
cudaError_t launch_fp8_gemv_rows(const uint16_t* x, const uint8_t* w, const float* w_scale, float* out, int64_t n,
                                 int64_t k, cudaStream_t stream) {
  return launch_rows(x, w, w_scale, out, n, k, stream);
}
cudaError_t launch_fp8_gemv_rows(const float* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t n,
                                 int64_t k, cudaStream_t stream) {
  return launch_rows(x, w, w_scale, out, n, k, stream);
}
cudaError_t launch_fp8_gemv_rows(const uint16_t* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t n,
                                 int64_t k, cudaStream_t stream) {
  return launch_rows(x, w, w_scale, out, n, k, stream);
}

}  // namespace troupe::kernels
