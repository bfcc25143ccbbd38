#pragma once
// The physical limits the GPU benchmark compares against, measured on the device it runs on:
// HBM bandwidth, matmul rates, and the bf16 GEMV kernel alone on a model's linear shapes; plus the
// CUDA-event timing they share with the step benchmarks.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "bench/bench_log.hpp"
#include "runtime/model_config.hpp"

namespace troupe::bench {

inline double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

inline bool cuda_ok(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return true;
  say("CUDA error in %s: %s", what, cudaGetErrorString(e));
  return false;
}

// Median milliseconds of `reps` runs of `fn` (after one warm-up), timed with CUDA events.
template <class Fn>
double time_events_ms(int reps, Fn fn) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  fn();
  cudaDeviceSynchronize();
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    cudaEventRecord(a);
    fn();
    cudaEventRecord(b);
    cudaEventSynchronize(b);
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return median(ms);
}

// (a) The HBM bandwidth limit, GB/s (0 on failure): the better of a device-to-device copy of 2 GiB
// ((read + written bytes) / time) and a read-only streaming kernel over 2 GiB (kernels/stream_read:
// bytes read / time), both measured here. Weight-streaming kernels only read, and beat the copy, so
// the copy alone is not the ceiling (bench/README.md). Writes the records hbm_copy_bandwidth,
// hbm_read_bandwidth and, where the device is known, hbm_datasheet_bandwidth.
double measure_bandwidth();
// The datasheet HBM bandwidth of the device this process runs on (device 0), GB/s: 4,800 for an
// H200, 3,350 for an H100 SXM; 0 where the name is not known.
double datasheet_bandwidth();
// (b) 8192^3 products: fp32 SGEMM in pedantic math and bf16 GemmEx with fp32 accumulation.
// Returns {fp32, bf16} TFLOP/s.
std::pair<double, double> measure_matmul();
// (b3) FP8 dense peak: a per-tensor-scaled e4m3 cuBLASLt GEMM (TN, bf16 out, fp32 accumulation) at
// 8192^3, the best of `runs` medians; where cuBLASLt refuses it, its block-scaled e4m3 GEMM at the
// same size (said in the log). TFLOP/s (0 on failure).
double measure_fp8_matmul(int runs = 3);
// (b2) The bf16 GEMV kernel alone at one token on each linear shape of `c`, one record per shape
// against `bw_gbs`; weights span 4x `l2_bytes` so every launch reads HBM.
void measure_gemv(const ModelConfig& c, double bw_gbs, int64_t l2_bytes);

}  // namespace troupe::bench
