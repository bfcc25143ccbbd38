#include "bench/device_ceilings.hpp"

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_log.hpp"
#include "kernels/fp8_block_gemm.hpp"
#include "kernels/gemv.hpp"
#include "kernels/stream_read.hpp"

namespace troupe::bench {

namespace {

// Device-to-device copy of `bytes`: (read + written) bytes per second, GB/s.
double copy_bandwidth(void* src, void* dst, size_t bytes) {
  const double ms = time_events_ms(10, [&] { cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice); });
  if (!cuda_ok(cudaGetLastError(), "bandwidth copy") || ms <= 0) return 0;
  return 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
}

// The read-only streaming kernel over `bytes`: bytes read per second, GB/s (the best of a few grid
// sizes, each a median of 10).
double read_bandwidth(const void* src, size_t bytes) {
  int sms = 0;
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
  uint32_t* partials = nullptr;
  if (sms <= 0 || !cuda_ok(cudaMalloc(&partials, 65535 * sizeof(uint32_t)), "cudaMalloc partials")) return 0;
  double best = 0;
  for (int per_sm : {2, 4, 8}) {
    const int blocks = std::min(65535, per_sm * sms);
    cudaError_t launch = cudaSuccess;
    const double ms = time_events_ms(10, [&] {
      const cudaError_t e = kernels::launch_stream_read(src, bytes / 16, partials, blocks, nullptr);
      if (e != cudaSuccess) launch = e;
    });
    if (launch == cudaSuccess && cuda_ok(cudaGetLastError(), "stream_read") && ms > 0)
      best = std::max(best, double(bytes) / (ms * 1e-3) / 1e9);
  }
  cudaFree(partials);
  return best;
}

}  // namespace

double datasheet_bandwidth() {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess) return 0;
  const std::string name = prop.name;
  if (name.find("H200") != std::string::npos) return 4800;
  if (name.find("H100") != std::string::npos) return name.find("PCIe") != std::string::npos ? 2000 : 3350;
  if (name.find("A100") != std::string::npos) return prop.totalGlobalMem > (size_t(60) << 30) ? 2039 : 1555;
  return 0;
}

double measure_bandwidth() {
  const size_t bytes = size_t(2) << 30;
  void *src = nullptr, *dst = nullptr;
  if (!cuda_ok(cudaMalloc(&src, bytes), "cudaMalloc src") || !cuda_ok(cudaMalloc(&dst, bytes), "cudaMalloc dst")) {
    cudaFree(src);
    return 0;
  }
  cudaMemset(src, 1, bytes);
  const double copy = copy_bandwidth(src, dst, bytes);
  const double read = read_bandwidth(src, bytes);
  cudaFree(src);
  cudaFree(dst);
  const double sheet = datasheet_bandwidth();
  if (copy > 0)
    add_record({"hbm_copy_bandwidth", copy, "GB/s", sheet > 0 ? sheet : std::optional<double>(),
                sheet > 0 ? copy / sheet : std::optional<double>(),
                "cudaMemcpy D2D of 2 GiB, (read + written bytes) / time, median of 10; limit = datasheet"});
  if (read > 0)
    add_record({"hbm_read_bandwidth", read, "GB/s", sheet > 0 ? sheet : std::optional<double>(),
                sheet > 0 ? read / sheet : std::optional<double>(),
                "read-only streaming kernel (kernels/stream_read) over 2 GiB, bytes read / time, best grid of 2/4/8 "
                "blocks per SM, median of 10 each; limit = datasheet"});
  if (sheet > 0)
    add_record({"hbm_datasheet_bandwidth", sheet, "GB/s", {}, {}, "the vendor's figure for this device"});
  say("HBM: copy %.0f GB/s, read-only stream %.0f GB/s, datasheet %.0f GB/s; limit = %.0f GB/s", copy, read, sheet,
      std::max(copy, read));
  return std::max(copy, read);
}

// (b) 8192^3 products: fp32 SGEMM in pedantic math (the backend's mode) and bf16 GemmEx with fp32
// accumulation. Returns {fp32, bf16} TFLOP/s.
std::pair<double, double> measure_matmul() {
  const int n = 8192;
  const size_t count = size_t(n) * n;
  std::vector<float> host(count);
  for (size_t i = 0; i < count; ++i) host[i] = float(int((i * 2654435761u) % 2001) - 1000) * 1e-3f;
  std::vector<uint16_t> host_bf16(count);
  for (size_t i = 0; i < count; ++i) {
    uint32_t bits;
    std::memcpy(&bits, &host[i], 4);
    host_bf16[i] = uint16_t(bits >> 16);
  }
  float *a = nullptr, *b = nullptr, *c = nullptr;
  uint16_t *ah = nullptr, *bh = nullptr, *ch = nullptr;
  double fp32 = 0, bf16 = 0;
  cublasHandle_t h = nullptr;
  const double flops = 2.0 * double(n) * n * n;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
    say("cublasCreate failed");
    return {0, 0};
  }
  const float alpha = 1.0f, beta = 0.0f;
  if (cuda_ok(cudaMalloc(&a, count * 4), "malloc") && cuda_ok(cudaMalloc(&b, count * 4), "malloc") &&
      cuda_ok(cudaMalloc(&c, count * 4), "malloc")) {
    cudaMemcpy(a, host.data(), count * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(b, host.data(), count * 4, cudaMemcpyHostToDevice);
    cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH);
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    const double ms = time_events_ms(10, [&] {
      cublasStatus_t s = cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, a, n, b, n, &beta, c, n);
      if (s != CUBLAS_STATUS_SUCCESS) st = s;
    });
    if (st == CUBLAS_STATUS_SUCCESS && cuda_ok(cudaGetLastError(), "sgemm") && ms > 0) fp32 = flops / (ms * 1e-3) / 1e12;
    else say("cublasSgemm failed (status %d)", int(st));
  }
  cudaFree(a);
  cudaFree(b);
  cudaFree(c);
  if (cuda_ok(cudaMalloc(&ah, count * 2), "malloc") && cuda_ok(cudaMalloc(&bh, count * 2), "malloc") &&
      cuda_ok(cudaMalloc(&ch, count * 2), "malloc")) {
    cudaMemcpy(ah, host_bf16.data(), count * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(bh, host_bf16.data(), count * 2, cudaMemcpyHostToDevice);
    cublasSetMathMode(h, CUBLAS_DEFAULT_MATH);
    cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
    const double ms = time_events_ms(10, [&] {
      cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, ah, CUDA_R_16BF, n, bh,
                                      CUDA_R_16BF, n, &beta, ch, CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT);
      if (s != CUBLAS_STATUS_SUCCESS) st = s;
    });
    if (st == CUBLAS_STATUS_SUCCESS && cuda_ok(cudaGetLastError(), "gemmex") && ms > 0) bf16 = flops / (ms * 1e-3) / 1e12;
    else say("cublasGemmEx bf16 failed (status %d)", int(st));
  }
  cudaFree(ah);
  cudaFree(bh);
  cudaFree(ch);
  cublasDestroy(h);
  return {fp32, bf16};
}

// (b2) The bf16 GEMV kernel (what CudaBackend::linear runs for <= 8 tokens) alone at one token on
// each linear shape of the model. Each shape gets enough weight copies to span 4x the L2 cache,
// used in turn, so every timed launch reads its weights from HBM; three untimed launches before
// each timed one keep the GPU busy while the host enqueues it (no launch gap inside the events).
void measure_gemv(const ModelConfig& c, double bw_gbs, int64_t l2_bytes) {
  const int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  struct Shape {
    const char* name;
    int64_t out, in;
  };
  const std::vector<Shape> shapes = {{"q_proj", q, h},
                                     {"k_proj", kv, h},
                                     {"v_proj", kv, h},
                                     {"o_proj", h, q},
                                     {"gate_proj", c.intermediate_size, h},
                                     {"up_proj", c.intermediate_size, h},
                                     {"down_proj", h, c.intermediate_size},
                                     {"lm_head", c.vocab_size, h},
                                     // The fused shapes the model runs (models/attention.hpp, mlp.hpp).
                                     {"qkv_proj", q + 2 * kv, h},
                                     {"gate_up_proj", 2 * c.intermediate_size, h}};
  constexpr int kReps = 25, kPadding = 3;
  for (const Shape& s : shapes) {
    if (remaining_s() < 120) {
      say("  gemv %s skipped: %.0f s left", s.name, remaining_s());
      return;
    }
    const int64_t weight_bytes = s.out * s.in * 2;
    const int64_t copies = std::clamp<int64_t>((4 * l2_bytes + weight_bytes - 1) / weight_bytes, 1, 64);
    std::vector<uint16_t*> weights(size_t(copies), nullptr);
    float *x = nullptr, *y = nullptr;
    bool ok = cuda_ok(cudaMalloc(&x, size_t(s.in) * 4), "cudaMalloc x") &&
              cuda_ok(cudaMalloc(&y, size_t(s.out) * 4), "cudaMalloc y");
    for (auto& w : weights) ok = ok && cuda_ok(cudaMalloc(&w, size_t(weight_bytes)), "cudaMalloc weights");
    std::vector<cudaEvent_t> events(2 * kReps, nullptr);
    for (auto& e : events) cudaEventCreate(&e);
    double ms = 0;
    if (ok) {
      cudaMemset(x, 0x3c, size_t(s.in) * 4);  // small finite values: 0x3c3c3c3c ~ 0.0115
      for (auto* w : weights) cudaMemset(w, 0x3c, size_t(weight_bytes));
      int64_t next = 0;
      auto launch = [&] {
        const cudaError_t e = kernels::launch_gemv_bf16(x, weights[size_t(next)], nullptr, y, 1, s.out, s.in, nullptr);
        next = (next + 1) % copies;
        return e;
      };
      cudaError_t err = cudaSuccess;
      for (int64_t i = 0; i < copies + kPadding; ++i) err = err != cudaSuccess ? err : launch();  // warm-up
      for (int rep = 0; rep < kReps; ++rep) {
        for (int p = 0; p < kPadding; ++p) err = err != cudaSuccess ? err : launch();
        cudaEventRecord(events[size_t(2 * rep)]);
        err = err != cudaSuccess ? err : launch();
        cudaEventRecord(events[size_t(2 * rep + 1)]);
      }
      ok = cuda_ok(err, "launch_gemv_bf16") && cuda_ok(cudaDeviceSynchronize(), "gemv");
      std::vector<double> times;
      for (int rep = 0; ok && rep < kReps; ++rep) {
        float t = 0;
        cudaEventElapsedTime(&t, events[size_t(2 * rep)], events[size_t(2 * rep + 1)]);
        times.push_back(t);
      }
      ms = median(times);
    }
    for (auto& e : events) cudaEventDestroy(e);
    for (auto* w : weights) cudaFree(w);
    cudaFree(x);
    cudaFree(y);
    if (!ok || ms <= 0) continue;
    const double gbs = double(weight_bytes) / (ms * 1e-3) / 1e9;
    std::ostringstream note;
    note << "launch_gemv_bf16 at 1 token, W [" << s.out << " x " << s.in << "] bf16 (" << double(weight_bytes) / 1e6
         << " MB) from HBM (" << copies << " copies in turn), median of " << kReps << " CUDA-event timings; " << gbs
         << " GB/s; limit = weight bytes / measured HBM bandwidth";
    BenchRecord r{std::string("gemv_b1_") + s.name, ms, "ms", {}, {}, note.str(), {{"gb_per_s", gbs}}};
    if (bw_gbs > 0) {
      r.limit = double(weight_bytes) / (bw_gbs * 1e9) * 1e3;
      r.fraction_of_limit = *r.limit / ms;
    }
    add_record(r);
  }
}

}  // namespace troupe::bench

namespace troupe::bench {

double measure_fp8_matmul(int runs) {
  const int64_t n = 8192;
  const size_t count = size_t(n * n);
  uint8_t *a = nullptr, *b = nullptr;
  uint16_t* d = nullptr;
  float* scales = nullptr;
  void* workspace = nullptr;
  const size_t workspace_bytes = size_t(32) << 20;
  cublasLtHandle_t lt = nullptr;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, ld = nullptr;
  cublasLtMatmulPreference_t pref = nullptr;
  double best = 0;
  auto ok = [](cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; };
  if (cuda_ok(cudaMalloc(&a, count), "malloc") && cuda_ok(cudaMalloc(&b, count), "malloc") &&
      cuda_ok(cudaMalloc(&d, count * 2), "malloc") && cuda_ok(cudaMalloc(&scales, 16), "malloc") &&
      cuda_ok(cudaMalloc(&workspace, workspace_bytes), "malloc") && ok(cublasLtCreate(&lt))) {
    std::vector<uint8_t> host(count);
    for (size_t i = 0; i < count; ++i) host[i] = uint8_t((i * 2654435761u) >> 24) & 0x77;  // finite e4m3, no NaN
    cudaMemcpy(a, host.data(), count, cudaMemcpyHostToDevice);
    cudaMemcpy(b, host.data(), count, cudaMemcpyHostToDevice);
    const float ones[4] = {1, 1, 1, 1};
    cudaMemcpy(scales, ones, sizeof(ones), cudaMemcpyHostToDevice);
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    const float* sa = scales;
    const float* sb = scales + 1;
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    const uint64_t max_ws = workspace_bytes;
    if (ok(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F)) &&
        ok(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta))) &&
        ok(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb))) &&
        ok(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sa, sizeof(sa))) &&
        ok(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sb, sizeof(sb))) &&
        ok(cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, n, n, n)) &&
        ok(cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, n, n, n)) &&
        ok(cublasLtMatrixLayoutCreate(&ld, CUDA_R_16BF, n, n, n)) && ok(cublasLtMatmulPreferenceCreate(&pref)) &&
        ok(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws,
                                                sizeof(max_ws))) &&
        ok(cublasLtMatmulAlgoGetHeuristic(lt, op, la, lb, ld, ld, pref, 1, &result, &found)) && found > 0) {
      const float alpha = 1.0f, beta = 0.0f;
      cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
      const double flops = 2.0 * double(n) * double(n) * double(n);
      for (int run = 0; run < runs; ++run) {
        const double ms = time_events_ms(10, [&] {
          const cublasStatus_t s = cublasLtMatmul(lt, op, &alpha, a, la, b, lb, &beta, d, ld, d, ld, &result.algo,
                                                  workspace, workspace_bytes, nullptr);
          if (s != CUBLAS_STATUS_SUCCESS) st = s;
        });
        if (st == CUBLAS_STATUS_SUCCESS && cuda_ok(cudaGetLastError(), "fp8 matmul") && ms > 0)
          best = std::max(best, flops / (ms * 1e-3) / 1e12);
      }
      if (st != CUBLAS_STATUS_SUCCESS) say("cublasLtMatmul fp8 failed (status %d)", int(st));
    } else {
      say("cuBLASLt offers no per-tensor FP8 GEMM here");
    }
  }
  if (pref) cublasLtMatmulPreferenceDestroy(pref);
  if (ld) cublasLtMatrixLayoutDestroy(ld);
  if (lb) cublasLtMatrixLayoutDestroy(lb);
  if (la) cublasLtMatrixLayoutDestroy(la);
  if (op) cublasLtMatmulDescDestroy(op);
  if (best == 0 && lt && a && b && d && workspace) {
    // Where the per-tensor GEMM is refused (the H200 with CUDA 13 answers CUBLAS_STATUS_NOT_SUPPORTED
    // at run time though the heuristic offers an algorithm), the ceiling is cuBLASLt's block-scaled
    // e4m3 GEMM at the same size: 128x128 weight and 1x128 activation scales of 1.
    const int64_t blocks = n / 128;
    float *x_scale = nullptr, *w_scale = nullptr;
    if (cuda_ok(cudaMalloc(&x_scale, size_t(blocks * n) * sizeof(float)), "malloc") &&
        cuda_ok(cudaMalloc(&w_scale, size_t(blocks * blocks) * sizeof(float)), "malloc")) {
      const std::vector<float> ones(size_t(blocks * n), 1.0f);
      cudaMemcpy(x_scale, ones.data(), size_t(blocks * n) * sizeof(float), cudaMemcpyHostToDevice);
      cudaMemcpy(w_scale, ones.data(), size_t(blocks * blocks) * sizeof(float), cudaMemcpyHostToDevice);
      const double flops = 2.0 * double(n) * double(n) * double(n);
      for (int run = 0; run < runs; ++run) {
        cudaError_t err = cudaSuccess;
        const double ms = time_events_ms(10, [&] {
          const cudaError_t e = kernels::launch_fp8_block_gemm_cublaslt(lt, a, x_scale, b, w_scale, d, n, n, n,
                                                                        workspace, workspace_bytes, nullptr);
          if (e != cudaSuccess) err = e;
        });
        if (err == cudaSuccess && ms > 0) best = std::max(best, flops / (ms * 1e-3) / 1e12);
      }
      say("FP8 ceiling: cuBLASLt block-scaled e4m3 GEMM at %lld^3 (the per-tensor one was refused): %.0f TFLOP/s",
          (long long)n, best);
    }
    cudaFree(x_scale);
    cudaFree(w_scale);
  }
  if (lt) cublasLtDestroy(lt);
  cudaFree(a);
  cudaFree(b);
  cudaFree(d);
  cudaFree(scales);
  cudaFree(workspace);
  return best;
}

}  // namespace troupe::bench
