#include <cuda_bf16.h>

#include <cstdlib>
#include <string_view>

#include "kernels/fp8_gemv_f16.hpp"
#include "kernels/fp8_gemv_f16_tiles.cuh"

// The dense launches of fp8_gemv_f16_tiles.cuh's tile loop: tiles of 16 rows (RowTiles, or
// SplitRows for two products in one launch).
namespace troupe::kernels {
namespace {

using namespace f16_tiles;

// kRingRegisters: fp8_gemv_f16_tiles.cuh's comment on gemv_tiles says why.
template <typename XT, typename OT, int kRing>
__global__ void __maxnreg__(kRingRegisters<kRing>)
    fp8_gemv_f16_kernel(const XT* __restrict__ x, const uint8_t* __restrict__ w, const float* __restrict__ w_scale,
                        OT* __restrict__ out, int m, int n, int k, int num_kb, int sharing) {
  gemv_tiles<kRing>(x, k, w, w_scale, m, k, num_kb, sharing, RowTiles<OT, false>{{n}, out, 1.0f});
}

// Two products of one x whose weights lie back to back in one [n, k] buffer and one scale table
// (rows [0, n_a) then [n_a, n), n_a a multiple of 128): tiles as RowTiles over all n rows, row r's
// sums to out_a[t, r] below n_a, else out_b[t, r - n_a].
template <typename OT>
struct SplitRows : SixteenRowTiles {
  OT* out_a;
  OT* out_b;
  int n_a;
  __device__ void store(int tile, int g, int t, int m, const float (&total)[4]) const {
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int row = tile * kTileRows + g + (j >= 2 ? 8 : 0), tok = 2 * t + (j % 2);
      if (row >= n || tok >= m) continue;
      if (row < n_a)
        store_out(out_a + int64_t(tok) * n_a + row, total[j]);
      else
        store_out(out_b + int64_t(tok) * (n - n_a) + (row - n_a), total[j]);
    }
  }
};

template <typename XT, typename OT, int kRing>
__global__ void __maxnreg__(kRingRegisters<kRing>)
    fp8_gemv_f16_split_kernel(const XT* __restrict__ x, const uint8_t* __restrict__ w,
                              const float* __restrict__ w_scale, OT* __restrict__ out_a, OT* __restrict__ out_b, int m,
                              int n_a, int n, int k, int num_kb, int sharing) {
  gemv_tiles<kRing>(x, k, w, w_scale, m, k, num_kb, sharing, SplitRows<OT>{{n}, out_a, out_b, n_a});
}

// gemv_stream_k's meeting place (StreamKState), zero at load; the last warp at each cut tile sets
// its counter back. One launch at a time on a device uses it: the dense decode products run on the
// backend's stream, each after the one before has finished (dependent launches wait before they
// reach it).
constexpr int64_t kStreamKMaxTiles = 1 << 16, kStreamKMaxWarps = 4096;
__device__ int stream_k_counters[kStreamKMaxTiles];
__device__ float stream_k_partials[kStreamKMaxWarps * 2 * 4 * 32];

template <typename XT, typename OT, int kRing>
__global__ void __maxnreg__(kRingRegisters<kRing>)
    fp8_gemv_f16_stream_k_kernel(const XT* __restrict__ x, const uint8_t* __restrict__ w,
                                 const float* __restrict__ w_scale, OT* __restrict__ out, int m, int n, int k,
                                 int num_kb, int) {
  gemv_stream_k<kRing>(x, k, w, w_scale, m, k, num_kb, RowTiles<OT, false>{{n}, out, 1.0f},
                       StreamKState{stream_k_counters, stream_k_partials});
}

template <typename XT, typename OT, int kRing>
__global__ void __maxnreg__(kRingRegisters<kRing>)
    fp8_gemv_f16_split_stream_k_kernel(const XT* __restrict__ x, const uint8_t* __restrict__ w,
                                       const float* __restrict__ w_scale, OT* __restrict__ out_a,
                                       OT* __restrict__ out_b, int m, int n_a, int n, int k, int num_kb, int) {
  gemv_stream_k<kRing>(x, k, w, w_scale, m, k, num_kb, SplitRows<OT>{{n}, out_a, out_b, n_a},
                       StreamKState{stream_k_counters, stream_k_partials});
}

// TROUPE_F16_STREAM_K=0 keeps every launch on the shared plan (an A/B switch); read once.
bool stream_k_enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("TROUPE_F16_STREAM_K");
    return !(env && std::string_view(env) == "0");
  }();
  return enabled;
}

// The kernel and plan for `tiles` x num_kb units: stream-K on every resident warp where its busiest
// warp takes at least 10% fewer K blocks than the shared plan's and still 8 or more (fewer, and
// the cut tiles' meetings cost more than the balance gains), else the shared plan.
template <typename Planned, typename StreamK>
cudaError_t choose(Planned planned, StreamK stream_k, int64_t m, int64_t tiles, int64_t k, const void** kernel,
                   F16Plan* plan) {
  if (cudaError_t err = plan_f16(reinterpret_cast<const void*>(planned), m, tiles, k, 1, plan); err != cudaSuccess)
    return err;
  *kernel = reinterpret_cast<const void*>(planned);
  if (!stream_k_enabled() || tiles > kStreamKMaxTiles || tiles * fp8_num_blocks(k) > INT32_MAX) return cudaSuccess;
  F16Plan sk;
  if (cudaError_t err = plan_f16(reinterpret_cast<const void*>(stream_k), m, tiles, k, 1, &sk); err != cudaSuccess)
    return err;
  const int64_t warps = std::min<int64_t>(sk.at_once * kWarps, kStreamKMaxWarps);
  const int64_t units = tiles * fp8_num_blocks(k), busiest = (units + warps - 1) / warps;
  if (busiest < 8 || busiest * 10 > plan->cost * 9) return cudaSuccess;
  *kernel = reinterpret_cast<const void*>(stream_k);
  *plan = {1, int(warps / kWarps), sk.smem, busiest, sk.at_once};
  return cudaSuccess;
}

template <typename XT, typename OT>
cudaError_t launch_f16(const XT* x, const uint8_t* w, const float* w_scale, OT* out, int64_t m, int64_t n, int64_t k,
                       cudaStream_t stream) {
  if (!x || !w || !w_scale || !out || !fp8_gemv_f16_supported(m, n, k, x, w)) return cudaErrorInvalidValue;
  const bool four = ring_buffers() == 4;
  using Kernel = void (*)(const XT*, const uint8_t*, const float*, OT*, int, int, int, int, int);
  const Kernel planned = four ? fp8_gemv_f16_kernel<XT, OT, 4> : fp8_gemv_f16_kernel<XT, OT, 3>;
  const Kernel stream_k = four ? fp8_gemv_f16_stream_k_kernel<XT, OT, 4> : fp8_gemv_f16_stream_k_kernel<XT, OT, 3>;
  const void* chosen = nullptr;
  F16Plan p;
  if (cudaError_t err = choose(planned, stream_k, m, (n + kTileRows - 1) / kTileRows, k, &chosen, &p);
      err != cudaSuccess)
    return err;
  return launch_dependent(reinterpret_cast<Kernel>(const_cast<void*>(chosen)), dim3(unsigned(p.grid)), dim3(kThreads),
                          p.smem, stream, x, w, w_scale, out, int(m), int(n), int(k), int(fp8_num_blocks(k)),
                          p.sharing);
}

template <typename XT, typename OT>
cudaError_t launch_f16_split(const XT* x, const uint8_t* w, const float* w_scale, OT* out_a, int64_t n_a, OT* out_b,
                             int64_t n_b, int64_t m, int64_t k, cudaStream_t stream) {
  if (!x || !w || !w_scale || !out_a || !out_b || n_a < 1 || n_b < 1 || n_a % kFp8BlockSize != 0 ||
      !fp8_gemv_f16_supported(m, n_a + n_b, k, x, w))
    return cudaErrorInvalidValue;
  const bool four = ring_buffers() == 4;
  using Kernel = void (*)(const XT*, const uint8_t*, const float*, OT*, OT*, int, int, int, int, int, int);
  const Kernel planned = four ? fp8_gemv_f16_split_kernel<XT, OT, 4> : fp8_gemv_f16_split_kernel<XT, OT, 3>;
  const Kernel stream_k =
      four ? fp8_gemv_f16_split_stream_k_kernel<XT, OT, 4> : fp8_gemv_f16_split_stream_k_kernel<XT, OT, 3>;
  const void* chosen = nullptr;
  F16Plan p;
  if (cudaError_t err = choose(planned, stream_k, m, (n_a + n_b + kTileRows - 1) / kTileRows, k, &chosen, &p);
      err != cudaSuccess)
    return err;
  return launch_dependent(reinterpret_cast<Kernel>(const_cast<void*>(chosen)), dim3(unsigned(p.grid)), dim3(kThreads),
                          p.smem, stream, x, w, w_scale, out_a, out_b, int(m), int(n_a), int(n_a + n_b), int(k),
                          int(fp8_num_blocks(k)), p.sharing);
}

}  // namespace

bool fp8_gemv_f16_supported(int64_t m, int64_t n, int64_t k, const void* x, const void* w) {
  return m >= 1 && m <= kFp8GemvF16MaxTokens && n >= 1 && n <= INT32_MAX - kTileRows && k > 0 && k % 16 == 0 &&
         k <= INT32_MAX / 2 && staged_bytes(m, k) <= kSmemCap && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(w) % 16 == 0;
}

bool fp8_gemv_f16_stream_k(int64_t m, int64_t n, int64_t k) {
  if (m < 1 || m > kFp8GemvF16MaxTokens || n < 1 || k % 16 != 0 || staged_bytes(m, k) > kSmemCap) return false;
  const bool four = ring_buffers() == 4;
  const auto planned = four ? fp8_gemv_f16_kernel<uint16_t, float, 4> : fp8_gemv_f16_kernel<uint16_t, float, 3>;
  const auto stream_k =
      four ? fp8_gemv_f16_stream_k_kernel<uint16_t, float, 4> : fp8_gemv_f16_stream_k_kernel<uint16_t, float, 3>;
  const void* chosen = nullptr;
  F16Plan p;
  return choose(planned, stream_k, m, (n + kTileRows - 1) / kTileRows, k, &chosen, &p) == cudaSuccess &&
         chosen == reinterpret_cast<const void*>(stream_k);
}

cudaError_t launch_fp8_gemv_f16(const float* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream) {
  return launch_f16(x, w, w_scale, out, m, n, k, stream);
}
cudaError_t launch_fp8_gemv_f16(const uint16_t* x, const uint8_t* w, const float* w_scale, float* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream) {
  return launch_f16(x, w, w_scale, out, m, n, k, stream);
}
cudaError_t launch_fp8_gemv_f16(const float* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream) {
  return launch_f16(x, w, w_scale, out, m, n, k, stream);
}
cudaError_t launch_fp8_gemv_f16(const uint16_t* x, const uint8_t* w, const float* w_scale, uint16_t* out, int64_t m,
                                int64_t n, int64_t k, cudaStream_t stream) {
  return launch_f16(x, w, w_scale, out, m, n, k, stream);
}

cudaError_t launch_fp8_gemv_f16_split(const float* x, const uint8_t* w, const float* w_scale, float* out_a,
                                      int64_t n_a, float* out_b, int64_t n_b, int64_t m, int64_t k,
                                      cudaStream_t stream) {
  return launch_f16_split(x, w, w_scale, out_a, n_a, out_b, n_b, m, k, stream);
}
cudaError_t launch_fp8_gemv_f16_split(const uint16_t* x, const uint8_t* w, const float* w_scale, float* out_a,
                                      int64_t n_a, float* out_b, int64_t n_b, int64_t m, int64_t k,
                                      cudaStream_t stream) {
  return launch_f16_split(x, w, w_scale, out_a, n_a, out_b, n_b, m, k, stream);
}

}  // namespace troupe::kernels
