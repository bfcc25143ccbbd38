#include <algorithm>
#include <utility>

#include "kernels/bf16_stream.cuh"
#include "kernels/dependent_launch.cuh"
#include "kernels/gemv.hpp"
#include "kernels/sm_count.hpp"

// Layout of one launch (see launch_gemv_bf16 for how the numbers are picked):
//   - a warp owns kRowsPerWarp consecutive weight rows (a "row group") and accumulates all n tokens
//     for them, so each 16-byte load of W (8 bf16) feeds 8 * n FMAs per row and each x load
//     (two float4 per token) feeds kRowsPerWarp rows;
//   - the 32 lanes of a warp cover 256 consecutive elements of in_features (a "chunk"), lane l the
//     8 elements at 8 l; a warp keeps kUnroll chunks (kUnroll * kRowsPerWarp loads per lane) in
//     flight (kUnroll 2, or 1 at n >= 5, where 4 x n sums and 32 converted weights fill the
//     128 registers a thread may use; ptxas also hoists the next step's predicated loads);
//   - when there are few row groups (k/v_proj: 1024 rows), `splits` warps share one row group and
//     take every splits-th chunk; their partial sums meet in shared memory;
//   - a block is 4 warps (8 when splits == 8): groups_per_block row groups x splits warps;
//   - launched as a programmatic dependent (dependent_launch.cuh): the first weights are loaded
//     before waiting for the kernel that writes x, so the weight stream starts while it finishes.
// The sums of a warp leave through a reduce-scatter over the lanes (31 shuffles for 32 values).
namespace troupe::kernels {
namespace {

using namespace bf16_stream;

constexpr int kRowsPerWarp = 4;
// Chunks a warp loads before using them; one at 5-8 tokens, whose sums fill the registers.
__host__ __device__ constexpr int unroll_for(int num_tokens) { return num_tokens <= 4 ? 2 : 1; }
constexpr int kMaxWarps = 8;
constexpr int kChunkVec = 256;    // elements a warp covers per step, 16-byte path
constexpr int kChunkScalar = 32;  // elements a warp covers per step, scalar path

// Eight activations x[0..7] (16-byte aligned) as fp32: two float4 loads, or one 16-byte load of bf16.
__device__ __forceinline__ void load_x8(const float* x, float (&xs)[8]) {
  const float4* p = reinterpret_cast<const float4*>(x);
  const float4 a = __ldg(p), b = __ldg(p + 1);
  xs[0] = a.x, xs[1] = a.y, xs[2] = a.z, xs[3] = a.w, xs[4] = b.x, xs[5] = b.y, xs[6] = b.z, xs[7] = b.w;
}
__device__ __forceinline__ void load_x8(const uint16_t* x, float (&xs)[8]) {
  widen8(__ldg(reinterpret_cast<const uint4*>(x)), xs);
}
__device__ __forceinline__ float load_x(const float* x) { return *x; }
__device__ __forceinline__ float load_x(const uint16_t* x) { return __uint_as_float(uint32_t(*x) << 16); }

// out[t, row] = sum + bias[row] for value index = r * NT + t of the row group starting at row0.
template <int NT>
__device__ __forceinline__ void store_value(float* out, const float* bias, int64_t out_features, int64_t row0,
                                            int index, float sum) {
  const int64_t row = row0 + index / NT;
  const int t = index % NT;
  if (row < out_features) out[t * out_features + row] = sum + (bias ? bias[row] : 0.0f);
}

// x: [NT, in] fp32 or bf16 bits (XT float or uint16_t); w: [out, in]; out: [NT, out]. VEC: the
// 16-byte path (in % 8 == 0, x and w 16-byte aligned); else one element per lane per step.
template <int NT, bool VEC, typename XT>
__global__ void __launch_bounds__(kMaxWarps * 32, 2)
    gemv_bf16_kernel(const XT* __restrict__ x, const uint16_t* __restrict__ w, const float* __restrict__ bias,
                     float* __restrict__ out, int64_t out_features, int64_t in_features, int splits) {
  constexpr int kValues = kRowsPerWarp * NT;  // sums a warp produces
  constexpr int kPadded = next_pow2(kValues);
  constexpr int kUnroll = unroll_for(NT);
  static_assert(kValues <= 32, "one value per lane at most");
  __shared__ float partial[kMaxWarps][32];  // [warp][value], splits > 1 only
  allow_dependents();

  const int lane = int(threadIdx.x % 32), warp = int(threadIdx.x / 32);
  const int groups_per_block = int(blockDim.x / 32) / splits;
  const int group = warp / splits, split = warp % splits;
  const int64_t row0 = (int64_t(blockIdx.x) * groups_per_block + group) * kRowsPerWarp;

  const uint16_t* rows[kRowsPerWarp];
  bool row_ok[kRowsPerWarp];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    row_ok[r] = row0 + r < out_features;
    rows[r] = w + (row_ok[r] ? row0 + r : 0) * in_features;
  }

  float acc[kRowsPerWarp][NT];
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;

  bool waited = false;  // for the kernels before this one (x, and out may still be read)
  if constexpr (VEC) {
    const int num_vecs = int(in_features / 8);  // 8-element (16-byte) pieces of a row
    const int num_chunks = (num_vecs + 31) / 32;
    for (int c0 = split; c0 < num_chunks; c0 += splits * kUnroll) {
      uint4 wv[kUnroll][kRowsPerWarp];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int v = (c0 + u * splits) * 32 + lane;
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r)
          wv[u][r] = load_weights(rows[r] + v * 8, v < num_vecs);  // rows past the end read row 0
      }
      if (!waited) {
        wait_for_prerequisites();
        waited = true;
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int v = (c0 + u * splits) * 32 + lane;
        if (v >= num_vecs) continue;
        float wf[kRowsPerWarp][8];
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) {
          const uint32_t words[4] = {wv[u][r].x, wv[u][r].y, wv[u][r].z, wv[u][r].w};
#pragma unroll
          for (int k = 0; k < 4; ++k) {
            wf[r][2 * k] = bf16_lo(words[k]);
            wf[r][2 * k + 1] = bf16_hi(words[k]);
          }
        }
#pragma unroll
        for (int t = 0; t < NT; ++t) {
          float xs[8];
          load_x8(x + t * in_features + v * 8, xs);
#pragma unroll
          for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
            for (int k = 0; k < 8; ++k) acc[r][t] = fmaf(xs[k], wf[r][k], acc[r][t]);
        }
      }
    }
  } else {
    wait_for_prerequisites();
    waited = true;
    for (int i = split * kChunkScalar + lane; i < int(in_features); i += splits * kChunkScalar) {
      float wf[kRowsPerWarp];
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) wf[r] = row_ok[r] ? __uint_as_float(uint32_t(rows[r][i]) << 16) : 0.0f;
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const float xv = load_x(x + t * in_features + i);
#pragma unroll
        for (int r = 0; r < kRowsPerWarp; ++r) acc[r][t] = fmaf(xv, wf[r], acc[r][t]);
      }
    }
  }

  if (!waited) wait_for_prerequisites();  // a warp without chunks
  float values[kPadded];
#pragma unroll
  for (int i = 0; i < kPadded; ++i) values[i] = i < kValues ? acc[i / NT][i % NT] : 0.0f;
  static_assert((kPadded & (kPadded - 1)) == 0 && kPadded <= 32, "a power of two <= 32");
  reduce_scatter<kPadded / 2, 16>(values, lane);
  const float sum = values[0];
  const int index = lane / (32 / kPadded);
  const bool writer = lane % (32 / kPadded) == 0 && index < kValues;
  if (splits == 1) {  // uniform over the launch
    if (writer) store_value<NT>(out, bias, out_features, row0, index, sum);
    return;
  }
  if (writer) partial[warp][index] = sum;
  __syncthreads();
  for (int i = int(threadIdx.x); i < groups_per_block * kValues; i += int(blockDim.x)) {
    const int g = i / kValues, value = i % kValues;
    float total = 0.0f;
    for (int s = 0; s < splits; ++s) total += partial[g * splits + s][value];
    store_value<NT>(out, bias, out_features, (int64_t(blockIdx.x) * groups_per_block + g) * kRowsPerWarp, value,
                    total);
  }
}

template <int NT, typename XT>
cudaError_t launch_tokens(bool vec, dim3 grid, dim3 block, int splits, const XT* x, const uint16_t* weight,
                          const float* bias, float* out, int64_t out_features, int64_t in_features,
                          cudaStream_t stream) {
  const auto kernel = vec ? gemv_bf16_kernel<NT, true, XT> : gemv_bf16_kernel<NT, false, XT>;
  return launch_dependent(kernel, grid, block, 0, stream, x, weight, bias, out, out_features, in_features, splits);
}

template <typename XT>
cudaError_t launch_gemv(const XT* x, const uint16_t* weight, const float* bias, float* out, int64_t n,
                        int64_t out_features, int64_t in_features, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (n < 0 || n > kGemvMaxTokens || out_features <= 0 || in_features <= 0 || !x || !weight || !out)
    return cudaErrorInvalidValue;
  if (in_features > INT32_MAX - 8 * kChunkVec) return cudaErrorInvalidValue;  // 32-bit column indices
  const bool vec = in_features % 8 == 0 && reinterpret_cast<uintptr_t>(weight) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(x) % 16 == 0;

  // Up to ~16 warps per SM, one wave that stays resident (<= 128 registers a thread) and keeps
  // 16 x 32 lanes x kUnroll x kRowsPerWarp x 16 B = 32-64 KiB of W in flight per SM, where ~25 KiB
  // covers HBM latency: when the row groups alone give fewer warps, split each row group's chunks
  // over 2, 4 or 8 warps while the total stays within that wave and every warp gets a chunk.
  // Llama-3-8B on 132 SMs: k/v_proj (256 row groups) 8 ways, q/o/down_proj (1024) 2 ways,
  // gate/up (3584) and lm_head (32064) not split.
  int num_sms = 1;
  if (cudaError_t err = current_sm_count(&num_sms); err != cudaSuccess) return err;
  const int64_t target_warps = 16 * int64_t(std::max(num_sms, 1));
  const int64_t row_groups = (out_features + kRowsPerWarp - 1) / kRowsPerWarp;
  const int64_t chunk = vec ? kChunkVec : kChunkScalar;
  const int64_t num_chunks = (in_features + chunk - 1) / chunk;
  int splits = 1;
  while (splits < kMaxWarps && row_groups * splits * 2 <= target_warps && num_chunks >= 2 * splits) splits *= 2;
  const int groups_per_block = std::max(1, 4 / splits);
  const int64_t num_blocks = (row_groups + groups_per_block - 1) / groups_per_block;
  if (num_blocks > INT32_MAX) return cudaErrorInvalidValue;
  const dim3 grid{unsigned(num_blocks)}, block{unsigned(groups_per_block * splits * 32)};

  switch (n) {
    case 1: return launch_tokens<1>(vec, grid, block, splits, x, weight, bias, out, out_features, in_features, stream);
    case 2: return launch_tokens<2>(vec, grid, block, splits, x, weight, bias, out, out_features, in_features, stream);
    case 3: return launch_tokens<3>(vec, grid, block, splits, x, weight, bias, out, out_features, in_features, stream);
    case 4: return launch_tokens<4>(vec, grid, block, splits, x, weight, bias, out, out_features, in_features, stream);
    case 5: return launch_tokens<5>(vec, grid, block, splits, x, weight, bias, out, out_features, in_features, stream);
    case 6: return launch_tokens<6>(vec, grid, block, splits, x, weight, bias, out, out_features, in_features, stream);
    case 7: return launch_tokens<7>(vec, grid, block, splits, x, weight, bias, out, out_features, in_features, stream);
    default: return launch_tokens<8>(vec, grid, block, splits, x, weight, bias, out, out_features, in_features, stream);
  }
}

}  // namespace

cudaError_t launch_gemv_bf16(const float* x, const uint16_t* weight, const float* bias, float* out, int64_t n,
                             int64_t out_features, int64_t in_features, cudaStream_t stream) {
  return launch_gemv(x, weight, bias, out, n, out_features, in_features, stream);
}

cudaError_t launch_gemv_bf16_x16(const uint16_t* x, const uint16_t* weight, const float* bias, float* out, int64_t n,
                                 int64_t out_features, int64_t in_features, cudaStream_t stream) {
  return launch_gemv(x, weight, bias, out, n, out_features, in_features, stream);
}

}  // namespace troupe::kernels
