#include <cuda_bf16.h>

#include <type_traits>

#include "kernels/bf16_stream.cuh"
#include "kernels/dependent_launch.cuh"
#include "kernels/mla_absorb.hpp"
#include "kernels/split_kv_partials.cuh"

// Layouts (mla_absorb.hpp has the formulas). R1: H 128, nope = v = 128, kv_lora 512, 132 SMs.
//   absorb: grid (H, column blocks of 128), 4 warps of 32 columns. Lane l: group g = l / 4 (rows
//     k0 + 8 u + g of each step of 8 U rows), piece l % 4 (8 columns, one 16-byte load per row).
//     A step loads U rows per lane before using them (U 16 at n <= 2, else 8: 8 n sums and 4 U
//     registers of weights stay within 128 registers). R1: 512 CTAs, 2048 warps, each reading
//     128 rows x 64 bytes; ~15 warps x 4 KB = 60 KB of loads in flight per SM at U 8.
//   unabsorb: grid (H, row blocks of 32), 8 warps of 4 rows. Lane l reads the 16 bytes at column
//     8 l of each 256-column chunk of its 4 rows, 2 chunks per step (a 512-wide row in one step:
//     8 loads per lane in flight). R1: 512 CTAs, 4096 warps.
namespace troupe::kernels {
namespace {

using namespace bf16_stream;

constexpr int kAbsorbWarps = 4;
constexpr int kAbsorbGroups = 8;        // lane groups of a warp: rows g, g + 8, g + 16, ...
constexpr int kAbsorbPiecesPerWarp = 4;  // 8-column pieces: 32 columns a warp
constexpr int kAbsorbPiecesPerBlock = kAbsorbWarps * kAbsorbPiecesPerWarp;
__host__ __device__ constexpr int absorb_unroll(int num_tokens) { return num_tokens <= 2 ? 16 : 8; }

constexpr int kUnabsorbWarps = 8;
constexpr int kUnabsorbRowsPerWarp = 4;
constexpr int kUnabsorbRowsPerBlock = kUnabsorbWarps * kUnabsorbRowsPerWarp;
constexpr int kUnabsorbUnroll = 2;  // 256-column chunks a step loads

// x rounded to bf16 (nearest even), as f32_to_bf16 rounds the cuBLAS path's inputs.
__device__ __forceinline__ float round_bf16(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

// q: [*, H, nope + rope] fp32; w: kv_b bf16 bits; q_abs: [NT, H, kv_lora + rope].
template <int NT>
__global__ void __launch_bounds__(kAbsorbWarps * 32)
    mla_absorb_q_kernel(const float* __restrict__ q, const int32_t* __restrict__ tokens,
                        const uint16_t* __restrict__ w, float* __restrict__ q_abs, int num_heads, int nope, int rope,
                        int kv_lora, int v_dim) {
  constexpr int kUnroll = absorb_unroll(NT);
  constexpr int kStepRows = kAbsorbGroups * kUnroll;  // rows a warp covers per step
  constexpr int kValues = 8 * NT;                      // a lane's sums: [column c of its piece][token]
  __shared__ float q_s[NT][kMlaAbsorbMaxNope];         // bf16-rounded q_nope, zero past nope
  allow_dependents();

  const int lane = int(threadIdx.x % 32), warp = int(threadIdx.x / 32);
  const int h = int(blockIdx.x);
  const int group = lane / kAbsorbPiecesPerWarp;
  const int piece = (int(blockIdx.y) * kAbsorbWarps + warp) * kAbsorbPiecesPerWarp + lane % kAbsorbPiecesPerWarp;
  const bool piece_ok = piece < kv_lora / 8;
  const int qk = nope + rope, entry = kv_lora + rope;
  const int padded = (nope + kStepRows - 1) / kStepRows * kStepRows;  // <= kMlaAbsorbMaxNope
  // Row k of W_UK_h at this lane's 8 columns: wk + k * kv_lora.
  const uint16_t* wk = w + int64_t(h) * (nope + v_dim) * kv_lora + (piece_ok ? piece * 8 : 0);

  uint4 wv[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int row = u * kAbsorbGroups + group;
    wv[u] = load_weights(wk + int64_t(row) * kv_lora, piece_ok && row < nope);
  }
  wait_for_prerequisites();  // q, tokens, and q_abs's earlier readers
  for (int i = int(threadIdx.x); i < NT * padded; i += int(blockDim.x)) {
    const int t = i / padded, k = i % padded;
    const int64_t tok = tokens ? tokens[t] : t;
    q_s[t][k] = k < nope ? round_bf16(q[(tok * num_heads + h) * qk + k]) : 0.0f;
  }
  if (blockIdx.y == 0) {  // q_pe as it is, after the latent part
    for (int i = int(threadIdx.x); i < NT * rope; i += int(blockDim.x)) {
      const int t = i / rope, r = i % rope;
      const int64_t tok = tokens ? tokens[t] : t;
      q_abs[(int64_t(t) * num_heads + h) * entry + kv_lora + r] = q[(tok * num_heads + h) * qk + nope + r];
    }
  }
  __syncthreads();

  float acc[kValues];
#pragma unroll
  for (int i = 0; i < kValues; ++i) acc[i] = 0.0f;
  for (int k0 = 0; k0 < padded; k0 += kStepRows) {
    if (k0 > 0) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int row = k0 + u * kAbsorbGroups + group;
        wv[u] = load_weights(wk + int64_t(row) * kv_lora, piece_ok && row < nope);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int row = k0 + u * kAbsorbGroups + group;  // < padded; q_s and wv are 0 past nope
      float wf[8];
      widen8(wv[u], wf);
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        const float x = q_s[t][row];
#pragma unroll
        for (int c = 0; c < 8; ++c) acc[c * NT + t] = fmaf(x, wf[c], acc[c * NT + t]);
      }
    }
  }

  // Sum over the 8 groups (lane bits 4, 3, 2): lane l keeps indices [g NT, g NT + NT) with
  // g = l / 4, i.e. column g of its piece for every token.
  fold_half<4 * NT>(acc, lane, 16);
  fold_half<2 * NT>(acc, lane, 8);
  fold_half<NT>(acc, lane, 4);
  if (piece_ok) {
    const int col = piece * 8 + group;
#pragma unroll
    for (int t = 0; t < NT; ++t) q_abs[(int64_t(t) * num_heads + h) * entry + col] = acc[t];
  }
}

// o_lat: [NT, H, kv_lora] fp32; w: kv_b bf16 bits; out: [*, H, v_dim], rows tokens[t] (or t).
// With parts > 0, o_lat is mla_decode's split-KV workspace ([NT, H, parts, kv_lora] partial outputs,
// then maxima and sums [NT, H, parts] each), merged here as mla_decode.cu's combine kernel merges it
// (the same operations in the same order: the same fp32 values).
template <int NT>
__global__ void __launch_bounds__(kUnabsorbWarps * 32)
    mla_unabsorb_out_kernel(const float* __restrict__ o_lat, int parts, const int32_t* __restrict__ tokens,
                            const uint16_t* __restrict__ w, float* __restrict__ out, int num_heads, int nope,
                            int kv_lora, int v_dim) {
  constexpr int kRows = kUnabsorbRowsPerWarp;
  constexpr int kValues = kRows * NT;  // a warp's sums: [row r][token t] at r * NT + t
  constexpr int kPadded = next_pow2(kValues);
  static_assert(kPadded <= 32, "one value per lane at most");
  __shared__ __align__(16) uint16_t o_s[NT * kMlaAbsorbMaxLora];  // [t][kv_lora], bf16 bits
  allow_dependents();

  const int lane = int(threadIdx.x % 32), warp = int(threadIdx.x / 32);
  const int h = int(blockIdx.x);
  const int row0 = (int(blockIdx.y) * kUnabsorbWarps + warp) * kRows;  // rows of W_UV_h
  const uint16_t* rows[kRows];
  bool row_ok[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    row_ok[r] = row0 + r < v_dim;
    rows[r] = w + (int64_t(h) * (nope + v_dim) + nope + (row_ok[r] ? row0 + r : 0)) * kv_lora;
  }
  const int num_vecs = kv_lora / 8, num_chunks = (num_vecs + 31) / 32;

  uint4 wv[kUnabsorbUnroll][kRows];
#pragma unroll
  for (int u = 0; u < kUnabsorbUnroll; ++u) {
    const int v = u * 32 + lane;
#pragma unroll
    for (int r = 0; r < kRows; ++r) wv[u][r] = load_weights(rows[r] + v * 8, row_ok[r] && v < num_vecs);
  }
  wait_for_prerequisites();  // o_lat, tokens, and out's earlier readers
  if (parts > 0) {
    // Warp t weighs token t's partitions (the combine's first warp), then every thread merges columns.
    __shared__ float w_s[NT][kMlaAbsorbMaxPartitions];
    __shared__ float inv_s[NT];
    __shared__ int used_s[NT];
    const int64_t stats = int64_t(NT) * num_heads * parts;
    if (warp < NT) {
      const int64_t item = int64_t(warp) * num_heads + h;
      const float* maxima = o_lat + stats * kv_lora + item * parts;
      const split_kv::Weights wt = split_kv::weigh(maxima, maxima + stats, parts, lane, w_s[warp]);
      if (lane == 0) inv_s[warp] = wt.inv, used_s[warp] = wt.used;
    }
    __syncthreads();
    for (int i = int(threadIdx.x); i < NT * kv_lora; i += int(blockDim.x)) {
      const int t = i / kv_lora, j = i % kv_lora;
      const float acc = split_kv::merge_column(o_lat + (int64_t(t) * num_heads + h) * parts * kv_lora + j, kv_lora,
                                               used_s[t], w_s[t]);
      o_s[i] = __bfloat16_as_ushort(__float2bfloat16_rn(acc * inv_s[t]));
    }
  } else {
    for (int i = int(threadIdx.x); i < NT * kv_lora; i += int(blockDim.x)) {
      const int t = i / kv_lora, j = i % kv_lora;
      o_s[i] = __bfloat16_as_ushort(__float2bfloat16_rn(o_lat[(int64_t(t) * num_heads + h) * kv_lora + j]));
    }
  }
  __syncthreads();

  float acc[kRows][NT];
#pragma unroll
  for (int r = 0; r < kRows; ++r)
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[r][t] = 0.0f;
  for (int c0 = 0; c0 < num_chunks; c0 += kUnabsorbUnroll) {
    if (c0 > 0) {
#pragma unroll
      for (int u = 0; u < kUnabsorbUnroll; ++u) {
        const int v = (c0 + u) * 32 + lane;
#pragma unroll
        for (int r = 0; r < kRows; ++r) wv[u][r] = load_weights(rows[r] + v * 8, row_ok[r] && v < num_vecs);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnabsorbUnroll; ++u) {
      const int v = (c0 + u) * 32 + lane;
      if (v >= num_vecs) continue;  // o_s ends at kv_lora
      float wf[kRows][8];
#pragma unroll
      for (int r = 0; r < kRows; ++r) widen8(wv[u][r], wf[r]);
#pragma unroll
      for (int t = 0; t < NT; ++t) {
        float xs[8];
        widen8(*reinterpret_cast<const uint4*>(o_s + t * kv_lora + v * 8), xs);
#pragma unroll
        for (int r = 0; r < kRows; ++r)
#pragma unroll
          for (int k = 0; k < 8; ++k) acc[r][t] = fmaf(xs[k], wf[r][k], acc[r][t]);
      }
    }
  }

  float values[kPadded];
#pragma unroll
  for (int i = 0; i < kPadded; ++i) values[i] = i < kValues ? acc[i / NT][i % NT] : 0.0f;
  reduce_scatter<kPadded / 2, 16>(values, lane);
  const int index = lane / (32 / kPadded);
  if (lane % (32 / kPadded) != 0 || index >= kValues) return;
  const int row = row0 + index / NT, t = index % NT;
  if (row >= v_dim) return;
  const int64_t tok = tokens ? tokens[t] : t;
  out[(tok * num_heads + h) * v_dim + row] = values[0];
}

template <int NT>
cudaError_t absorb_tokens(dim3 grid, cudaStream_t stream, const float* q, const int32_t* tokens,
                          const uint16_t* weight, float* q_abs, int num_heads, int nope, int rope, int kv_lora,
                          int v_dim) {
  return launch_dependent(mla_absorb_q_kernel<NT>, grid, dim3(kAbsorbWarps * 32), 0, stream, q, tokens, weight, q_abs,
                          num_heads, nope, rope, kv_lora, v_dim);
}

template <int NT>
cudaError_t unabsorb_tokens(dim3 grid, cudaStream_t stream, const float* o_lat, int parts, const int32_t* tokens,
                            const uint16_t* weight, float* out, int num_heads, int nope, int kv_lora, int v_dim) {
  return launch_dependent(mla_unabsorb_out_kernel<NT>, grid, dim3(kUnabsorbWarps * 32), 0, stream, o_lat, parts,
                          tokens, weight, out, num_heads, nope, kv_lora, v_dim);
}

// f(std::integral_constant<int, n>{}) for n in 1..kMlaAbsorbMaxTokens: the kernels' token count is
// a template parameter (their sums live in registers).
template <typename F>
cudaError_t by_tokens(int64_t n, F&& f) {
  static_assert(kMlaAbsorbMaxTokens == 8, "one case a token count");
  switch (n) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 5: return f(std::integral_constant<int, 5>{});
    case 6: return f(std::integral_constant<int, 6>{});
    case 7: return f(std::integral_constant<int, 7>{});
    default: return f(std::integral_constant<int, 8>{});
  }
}

bool bad_heads(int64_t num_heads, int64_t rows_per_head, int64_t kv_lora) {
  return num_heads < 1 || num_heads > INT32_MAX || num_heads * rows_per_head * kv_lora > (int64_t(1) << 40);
}

}  // namespace

cudaError_t launch_mla_absorb_q_bf16(const float* q, const int32_t* tokens, const uint16_t* weight, float* q_abs,
                                     int64_t n, int64_t num_heads, int64_t nope, int64_t rope, int64_t kv_lora,
                                     int64_t v_dim, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (!q || !q_abs || !mla_absorb_supports(weight, n, nope, rope, kv_lora, v_dim) ||
      bad_heads(num_heads, nope + v_dim, kv_lora) || rope > INT32_MAX / 2 || v_dim > INT32_MAX / 2)
    return cudaErrorInvalidValue;
  const int64_t column_blocks = (kv_lora / 8 + kAbsorbPiecesPerBlock - 1) / kAbsorbPiecesPerBlock;
  const dim3 grid{unsigned(num_heads), unsigned(column_blocks)};
  const int H = int(num_heads), K = int(nope), R = int(rope), L = int(kv_lora), V = int(v_dim);
  return by_tokens(n, [&](auto nt) {
    return absorb_tokens<decltype(nt)::value>(grid, stream, q, tokens, weight, q_abs, H, K, R, L, V);
  });
}

namespace {

// parts: 0 for o_lat as it is, else the partitions of the workspace o_lat points at.
cudaError_t unabsorb(const float* o_lat, int64_t parts, const int32_t* tokens, const uint16_t* weight, float* out,
                     int64_t n, int64_t num_heads, int64_t nope, int64_t kv_lora, int64_t v_dim, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (!o_lat || !out || !mla_absorb_supports(weight, n, nope, 0, kv_lora, v_dim) ||
      bad_heads(num_heads, nope + v_dim, kv_lora) || v_dim > INT32_MAX / 2 || parts < 0 ||
      parts > kMlaAbsorbMaxPartitions)
    return cudaErrorInvalidValue;
  const int64_t row_blocks = (v_dim + kUnabsorbRowsPerBlock - 1) / kUnabsorbRowsPerBlock;
  if (row_blocks > 65535) return cudaErrorInvalidValue;
  const dim3 grid{unsigned(num_heads), unsigned(row_blocks)};
  const int H = int(num_heads), K = int(nope), L = int(kv_lora), V = int(v_dim), P = int(parts);
  return by_tokens(n, [&](auto nt) {
    return unabsorb_tokens<decltype(nt)::value>(grid, stream, o_lat, P, tokens, weight, out, H, K, L, V);
  });
}

}  // namespace

cudaError_t launch_mla_unabsorb_out_bf16(const float* o_lat, const int32_t* tokens, const uint16_t* weight,
                                         float* out, int64_t n, int64_t num_heads, int64_t nope, int64_t kv_lora,
                                         int64_t v_dim, cudaStream_t stream) {
  return unabsorb(o_lat, 0, tokens, weight, out, n, num_heads, nope, kv_lora, v_dim, stream);
}

cudaError_t launch_mla_unabsorb_partials_bf16(const float* workspace, int64_t num_partitions, const int32_t* tokens,
                                              const uint16_t* weight, float* out, int64_t n, int64_t num_heads,
                                              int64_t nope, int64_t kv_lora, int64_t v_dim, cudaStream_t stream) {
  if (num_partitions < 2) return cudaErrorInvalidValue;
  return unabsorb(workspace, num_partitions, tokens, weight, out, n, num_heads, nope, kv_lora, v_dim, stream);
}

}  // namespace troupe::kernels
