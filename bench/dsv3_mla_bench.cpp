// DeepSeek-V3 (R1) MLA decode attention on device 0: the absorbed kernel (kernels/mla_decode.hpp;
// at these dims with a bf16 cache the tensor-core one, mla_decode_mma.cu, as the backend runs it)
// alone, plus its combine when the keys are split, at R1's dims (128 heads, latent 512 + rope 64,
// a bf16 latent cache in blocks of --block-size 64 shuffled over the cache) for batches 1, 64, 128
// and contexts 1024, 4096. Each record's value is the achieved GB/s for the bytes the kernel must
// move (every cached latent row once per token, q_abs and o_lat once), its limit the HBM bandwidth
// measured in the same run. With 128 heads the absorbed decode does ~240 FLOP per latent byte,
// past the H200's bf16 ridge (~186), so it is compute-bound: a second record per point,
// dsv3_mla_decode_b<B>_ctx<C>_vs_roofline, holds the time (us) against the larger of bytes /
// bandwidth and FLOPs / the bf16 cuBLAS matmul rate at 8192^3 (both measured in the same run); its
// fraction is "of the physical limit". The cache is replicated so one timed launch's rows are not in
// L2 from the one before. The absorption products (q_nope @ W_UK, o_lat @ W_UV^T, as CudaBackend
// runs them with bf16 weights: kernels/mla_absorb.hpp's weight-streaming kernels up to 8 tokens,
// cuBLAS strided-batched bf16 GEMMs past that, and at 1 and 8 tokens too as _cublas records) are
// timed separately against the time to read their weights and activations at that bandwidth.
// Prefill (dsv3_mla_prefill_ctx<N>, N = 1024, 4096: one sequence of N new tokens, all 128 heads, one
// layer): the tensor-core flash kernel (kernels/mla_prefill_wgmma.cu on Hopper) alone, its causal FLOPs
// (2 H (192 + 128) per visible (query, key) pair) against the bf16 matmul rate measured in the same
// run; the K/V expansion (latent @ kv_b_proj^T, bf16 GEMM) counted and timed separately
// (dsv3_mla_prefill_expand_ctx<N>). The decode cache and the prefill's latent, weights and keys
// are random (fill_random; until 2026-12-05 a memset: the prefill kernel measured the same on both,
// 444 against 442 TFLOP/s at 4,096 tokens on the H200); the absorption products, which stream
// their weights, still read a memset.
//   dsv3_mla_bench [--reps N] [--block-size N] [--out PATH] [--time-limit S]
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_log.hpp"
#include "bench/device_ceilings.hpp"
#include "kernels/mla_absorb.hpp"
#include "kernels/mla_decode.hpp"
#include "kernels/mla_prefill.hpp"
#include "kernels/smem_carveout.hpp"
#include "runtime/bench_record.hpp"

namespace troupe {
namespace {

using bench::add_record;
using bench::cuda_ok;
using bench::say;

constexpr int64_t kHeads = 128, kLora = 512, kRope = 64, kNope = 128, kV = 128, kEntry = kLora + kRope;

struct Args {
  int reps = 20;
  int64_t block_size = 64;
  std::string out;
  double time_limit_s = 290;
  std::string command;
};

bool parse(int argc, char** argv, Args& a) {
  for (int i = 0; i < argc; ++i) a.command += (i ? " " : "") + std::string(argv[i]);
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) return false;
    const std::string v = argv[++i];
    if (k == "--reps") a.reps = std::max(1, std::atoi(v.c_str()));
    else if (k == "--block-size") a.block_size = std::max(1, std::atoi(v.c_str()));
    else if (k == "--out") a.out = v;
    else if (k == "--time-limit") a.time_limit_s = std::atof(v.c_str());
    else return false;
  }
  return true;
}

template <class T>
T* device_alloc(size_t count) {
  void* p = nullptr;
  if (!cuda_ok(cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)), "cudaMalloc")) return nullptr;
  return static_cast<T*>(p);
}

template <class T>
T* upload(const std::vector<T>& host) {
  T* d = device_alloc<T>(host.size());
  if (d) cuda_ok(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  return d;
}

std::vector<float> random_floats(size_t count, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(count);
  for (float& x : v) x = normal(rng);
  return v;
}

// Fills `count` elements at d with normal values times `stddev` (bf16 or fp32 by T): one random
// pattern of 2^20 elements copied over the whole buffer. Varied data, as a model's: tensor cores
// may draw more power on random operands than on a memset's uniform ones (on the H200 the prefill
// kernel's time did not change; in the model's prefill it takes ~2.4 ms a layer against ~1.55 ms
// here, a gap the data does not explain).
template <class T>
bool fill_random(T* d, size_t count, std::mt19937& rng, float stddev) {
  const size_t period = std::min<size_t>(count, size_t(1) << 20);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<T> pattern(period);
  for (T& v : pattern) {
    const float x = normal(rng);
    if constexpr (sizeof(T) == 2) {
      uint32_t bits;
      std::memcpy(&bits, &x, 4);
      v = T(bits >> 16);
    } else {
      v = x;
    }
  }
  for (size_t at = 0; at < count; at += period)
    if (!cuda_ok(cudaMemcpy(d + at, pattern.data(), std::min(period, count - at) * sizeof(T), cudaMemcpyHostToDevice),
                 "cudaMemcpy"))
      return false;
  return true;
}

// One (batch, context) point of the decode kernel; false on a CUDA error.
bool bench_decode(const Args& args, int64_t batch, int64_t context, double hbm_gbs, double bf16_tflops,
                  int64_t l2_bytes, int num_sms, std::mt19937& rng) {
  const int64_t bs = args.block_size, blocks_per_seq = (context + bs - 1) / bs, num_blocks = batch * blocks_per_seq;
  const double cache_bytes = double(num_blocks * bs * kEntry) * 2;
  // Copies of the cache so that the rows one launch reads were not read by the previous few.
  const int64_t copies = std::clamp<int64_t>(int64_t(4.0 * double(l2_bytes) / cache_bytes) + 1, 1, 256);
  uint16_t* cache = device_alloc<uint16_t>(size_t(copies * num_blocks * bs * kEntry));
  if (!cache) return false;
  if (!fill_random(cache, size_t(copies * num_blocks * bs * kEntry), rng, 1.0f)) return false;
  std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  std::vector<int32_t> tables(size_t(copies * num_blocks));
  for (int64_t k = 0; k < copies; ++k)
    for (int64_t i = 0; i < num_blocks; ++i) tables[size_t(k * num_blocks + i)] = int32_t(k * num_blocks) + ids[size_t(i)];
  std::vector<int32_t> positions(static_cast<size_t>(batch), int32_t(context - 1));
  std::vector<int32_t> seq_of_token(static_cast<size_t>(batch));
  std::iota(seq_of_token.begin(), seq_of_token.end(), 0);
  int32_t* d_tables = upload(tables);
  int32_t* d_pos = upload(positions);
  int32_t* d_seq = upload(seq_of_token);
  float* q_abs = upload(random_floats(size_t(batch * kHeads * kEntry), rng));
  float* o_lat = device_alloc<float>(size_t(batch * kHeads * kLora));
  const int64_t parts = kernels::mla_decode_num_partitions(batch, kHeads, context, num_sms);
  const int64_t keys = kernels::mla_decode_partition_keys(context, parts);
  const int64_t floats = kernels::mla_decode_workspace_floats(batch, kHeads, kLora, parts);
  float* workspace = floats > 0 ? device_alloc<float>(size_t(floats)) : nullptr;
  if (!d_tables || !d_pos || !d_seq || !q_abs || !o_lat || (floats > 0 && !workspace)) return false;
  const float scale = 0.1352f;  // R1: 1/sqrt(192) * yarn mscale^2
  int64_t launch = 0;
  cudaError_t err = cudaSuccess;
  auto run = [&] {
    const int32_t* table = d_tables + (launch++ % copies) * num_blocks;
    const cudaError_t e = kernels::launch_mla_decode_f32(q_abs, cache, d_pos, d_seq, nullptr, batch, table,
                                                        blocks_per_seq, bs, kHeads, kLora, kRope, scale, parts, keys,
                                                        workspace, o_lat, nullptr);
    if (e != cudaSuccess) err = e;
  };
  const double ms = bench::time_events_ms(args.reps, run);
  const bool ok = cuda_ok(err, "launch_mla_decode_f32") && cuda_ok(cudaDeviceSynchronize(), "mla_decode");
  if (ok) {
    const double bytes = cache_bytes + double(batch * kHeads) * (kEntry + kLora) * 4;
    const double gbs = bytes / (ms * 1e-3) / 1e9;
    const bool mma = kernels::mla_decode_kernel_for(kLora, kRope, true) == kernels::MlaDecodeKernel::mma_bf16;
    char note[400];
    std::snprintf(note, sizeof(note),
                  "absorbed MLA decode kernel (%s, + combine), R1 dims, bf16 cache, block %lld, %lld-head tiles, "
                  "%lld partitions; bytes = latent rows read once per token + q_abs + o_lat; limit = measured HBM "
                  "bandwidth; %.1f us",
                  mma ? "tensor cores" : "fp32 SIMT", (long long)bs,
                  (long long)kernels::mla_decode_head_tile(batch, kHeads, num_sms), (long long)parts, ms * 1e3);
    BenchRecord r{"dsv3_mla_decode_b" + std::to_string(batch) + "_ctx" + std::to_string(context), gbs, "GB/s",
                  hbm_gbs, gbs / hbm_gbs, note};
    // S = Q K^T over 576 dims and O = P V over 512, per head and cached row.
    const double flops = 2.0 * double(batch * context) * kHeads * (kEntry + kLora);
    const double tflops = flops / (ms * 1e-3) / 1e12;
    r.extra = {{"us", ms * 1e3}, {"partitions", double(parts)}, {"bytes", bytes}, {"tflops", tflops}};
    add_record(r);
    if (bf16_tflops > 0) {
      const double bytes_us = bytes / (hbm_gbs * 1e9) * 1e6, flops_us = flops / (bf16_tflops * 1e12) * 1e6;
      const double roof_us = std::max(bytes_us, flops_us), us = ms * 1e3;
      std::snprintf(note, sizeof(note),
                    "the same launch; limit = max(bytes / HBM bandwidth = %.1f us, FLOPs %.3g / bf16 matmul rate "
                    "%.0f TFLOP/s = %.1f us); achieved %.0f TFLOP/s",
                    bytes_us, flops, bf16_tflops, flops_us, tflops);
      BenchRecord v{"dsv3_mla_decode_b" + std::to_string(batch) + "_ctx" + std::to_string(context) + "_vs_roofline",
                    us, "us", roof_us, roof_us / us, note};
      v.extra = {{"bytes_us", bytes_us}, {"flops_us", flops_us}, {"flops", flops}, {"tflops", tflops}};
      add_record(v);
    }
  }
  for (void* p : {static_cast<void*>(cache), static_cast<void*>(d_tables), static_cast<void*>(d_pos),
                  static_cast<void*>(d_seq), static_cast<void*>(q_abs), static_cast<void*>(o_lat),
                  static_cast<void*>(workspace)})
    if (p) cudaFree(p);
  return ok;
}

// The two absorption products at one batch size with R1's bf16 kv_b_proj (33.5 MB), fp32 outputs, as
// CudaBackend runs them: up to 8 tokens the weight-streaming kernels (kernels/mla_absorb.hpp: fp32 q
// and o_lat in, rounded to bf16 inside), recorded as dsv3_mla_{absorb_q,unabsorb_out}_b<B>; cuBLAS
// strided-batched bf16 GEMMs (on bf16 copies of q and o_lat, the conversions not timed) past 8,
// under the same name, and at B <= 8 as ..._b<B>_cublas for comparison. limit: reading W_UK (or
// W_UV) and the activations once and writing the output once at the measured bandwidth. Each timed
// rep is kLaunches launches in a row, each on the next of `copies` weight copies (over 4x the L2
// together), so no launch finds its weights in L2; the per-launch time is the rep's / kLaunches.
bool bench_absorption(const Args& args, cublasHandle_t h, int64_t batch, double hbm_gbs, int64_t l2_bytes) {
  constexpr int kLaunches = 10;
  const int64_t w_count = kHeads * (kNope + kV) * kLora;
  const int64_t copies = std::clamp<int64_t>(4 * l2_bytes / (w_count * 2) + 1, 1, 64);
  uint16_t* w = device_alloc<uint16_t>(size_t(copies * w_count));
  uint16_t* q16 = device_alloc<uint16_t>(size_t(batch * kHeads * (kNope + kRope)));
  uint16_t* o16 = device_alloc<uint16_t>(size_t(batch * kHeads * kLora));
  float* q = device_alloc<float>(size_t(batch * kHeads * (kNope + kRope)));
  float* o_lat = device_alloc<float>(size_t(batch * kHeads * kLora));
  float* q_abs = device_alloc<float>(size_t(batch * kHeads * kEntry));
  float* out = device_alloc<float>(size_t(batch * kHeads * kV));
  if (!w || !q16 || !o16 || !q || !o_lat || !q_abs || !out) return false;
  // 0x3c3c: bf16 0.0115 (fp32 0.0115 for the fp32 inputs); the work does not depend on the values.
  cudaMemset(w, 0x3c, size_t(copies * w_count) * 2);
  cudaMemset(q16, 0x3c, size_t(batch * kHeads * (kNope + kRope)) * 2);
  cudaMemset(o16, 0x3c, size_t(batch * kHeads * kLora) * 2);
  cudaMemset(q, 0x3c, size_t(batch * kHeads * (kNope + kRope)) * 4);
  cudaMemset(o_lat, 0x3c, size_t(batch * kHeads * kLora) * 4);
  const float alpha = 1.0f, beta = 0.0f;
  cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
  cudaError_t err = cudaSuccess;
  int64_t launch = 0;
  auto next_w = [&] { return w + (launch++ % copies) * w_count; };
  auto absorb_cublas = [&] {
    for (int k = 0; k < kLaunches; ++k)
      st = cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, int(kLora), int(batch), int(kNope), &alpha, next_w(),
                                      CUDA_R_16BF, int(kLora), (kNope + kV) * kLora, q16, CUDA_R_16BF,
                                      int(kHeads * (kNope + kRope)), kNope + kRope, &beta, q_abs, CUDA_R_32F,
                                      int(kHeads * kEntry), kEntry, int(kHeads), CUBLAS_COMPUTE_32F,
                                      CUBLAS_GEMM_DEFAULT);
  };
  auto unabsorb_cublas = [&] {
    for (int k = 0; k < kLaunches; ++k)
      st = cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(kV), int(batch), int(kLora), &alpha,
                                      next_w() + kNope * kLora, CUDA_R_16BF, int(kLora), (kNope + kV) * kLora, o16,
                                      CUDA_R_16BF, int(kHeads * kLora), kLora, &beta, out, CUDA_R_32F,
                                      int(kHeads * kV), kV, int(kHeads), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  };
  auto absorb_stream = [&] {
    for (int k = 0; k < kLaunches; ++k) {
      const cudaError_t e = kernels::launch_mla_absorb_q_bf16(q, nullptr, next_w(), q_abs, batch, kHeads, kNope, kRope,
                                                              kLora, kV, nullptr);
      if (e != cudaSuccess) err = e;
    }
  };
  auto unabsorb_stream = [&] {
    for (int k = 0; k < kLaunches; ++k) {
      const cudaError_t e = kernels::launch_mla_unabsorb_out_bf16(o_lat, nullptr, next_w(), out, batch, kHeads, kNope,
                                                                  kLora, kV, nullptr);
      if (e != cudaSuccess) err = e;
    }
  };
  struct Product {
    std::string name;
    std::function<void()> fn;
    double bytes;
    const char* how;
  };
  const double w_bytes = double(kHeads * kNope * kLora) * 2;  // W_UK and W_UV are the same size (nope == v)
  const double absorb_cublas_bytes = w_bytes + double(batch * kHeads) * (kNope * 2 + kLora * 4);
  const double unabsorb_cublas_bytes = w_bytes + double(batch * kHeads) * (kLora * 2 + kV * 4);
  const char* cublas_how = "cublasGemmStridedBatchedEx bf16 -> fp32 over 128 heads (bf16 q / o_lat, converted untimed)";
  const char* stream_how = "weight-streaming kernel (kernels/mla_absorb.cu, fp32 q / o_lat rounded to bf16 inside)";
  const std::string b = "_b" + std::to_string(batch);
  std::vector<Product> products;
  if (kernels::mla_absorb_supports(w, batch, kNope, kRope, kLora, kV)) {
    products.push_back({"absorb_q" + b, absorb_stream,
                        w_bytes + double(batch * kHeads) * ((kNope + kRope) * 4 + kEntry * 4), stream_how});
    products.push_back({"unabsorb_out" + b, unabsorb_stream, w_bytes + double(batch * kHeads) * (kLora + kV) * 4,
                        stream_how});
    products.push_back({"absorb_q" + b + "_cublas", absorb_cublas, absorb_cublas_bytes, cublas_how});
    products.push_back({"unabsorb_out" + b + "_cublas", unabsorb_cublas, unabsorb_cublas_bytes, cublas_how});
  } else {
    products.push_back({"absorb_q" + b, absorb_cublas, absorb_cublas_bytes, cublas_how});
    products.push_back({"unabsorb_out" + b, unabsorb_cublas, unabsorb_cublas_bytes, cublas_how});
  }
  bool ok = true;
  for (const Product& p : products) {
    const double ms = bench::time_events_ms(args.reps, p.fn) / kLaunches;
    if (st != CUBLAS_STATUS_SUCCESS || !cuda_ok(err, p.name.c_str()) || !cuda_ok(cudaDeviceSynchronize(), p.name.c_str())) {
      say("%s: cuBLAS status %d", p.name.c_str(), int(st));
      ok = false;
      continue;
    }
    const double us = ms * 1e3, roof_us = p.bytes / (hbm_gbs * 1e9) * 1e6;
    const double tflops = 2.0 * double(batch * kHeads) * kNope * kLora / (ms * 1e-3) / 1e12;
    char note[400];
    std::snprintf(note, sizeof(note),
                  "%s; R1's kv_b_proj views (16.8 MB of bf16 weights per product), %lld weight copies rotated so "
                  "L2 holds none, per launch of %d in a row; limit = %.3g bytes (weights + activations) at the "
                  "measured HBM bandwidth",
                  p.how, (long long)copies, kLaunches, p.bytes);
    BenchRecord r{"dsv3_mla_" + p.name, us, "us", roof_us, roof_us / us, note};
    r.extra = {{"tflops", tflops}, {"bytes", p.bytes}, {"gbs", p.bytes / (ms * 1e-3) / 1e9}};
    add_record(r);
  }
  for (void* p : {static_cast<void*>(w), static_cast<void*>(q16), static_cast<void*>(o16), static_cast<void*>(q),
                  static_cast<void*>(o_lat), static_cast<void*>(q_abs), static_cast<void*>(out)})
    cudaFree(p);
  return ok;
}

// One prefill of `context` new tokens (no cached context), R1 dims: the expansion GEMM and the
// attention kernel, each against the bf16 matmul rate `bf16_tflops`.
bool bench_prefill(const Args& args, cublasHandle_t h, int64_t context, double bf16_tflops, std::mt19937& rng) {
  const int64_t kv_width = kHeads * (kNope + kV);
  float* q = upload(random_floats(size_t(context * kHeads * (kNope + kRope)), rng));
  uint16_t* latent = device_alloc<uint16_t>(size_t(context * kLora));
  uint16_t* w = device_alloc<uint16_t>(size_t(kv_width * kLora));
  uint16_t* kv = device_alloc<uint16_t>(size_t(context * kv_width));
  uint16_t* k_pe = device_alloc<uint16_t>(size_t(context * kRope));
  float* out = device_alloc<float>(size_t(context * kHeads * kV));
  if (!q || !latent || !w || !kv || !k_pe || !out) return false;
  // Random operands (fill_random's note); the expanded keys come out near unit variance.
  if (!fill_random(latent, size_t(context * kLora), rng, 1.0f) ||
      !fill_random(w, size_t(kv_width * kLora), rng, 0.044f) || !fill_random(k_pe, size_t(context * kRope), rng, 1.0f))
    return false;
  const float alpha = 1.0f, beta = 0.0f;
  cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
  auto expand = [&] {
    st = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(kv_width), int(context), int(kLora), &alpha, w, CUDA_R_16BF,
                      int(kLora), latent, CUDA_R_16BF, int(kLora), &beta, kv, CUDA_R_16BF, int(kv_width),
                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  };
  const double expand_ms = bench::time_events_ms(args.reps, expand);
  bool ok = st == CUBLAS_STATUS_SUCCESS && cuda_ok(cudaDeviceSynchronize(), "expand");
  const double pairs = double(context) * double(context + 1) / 2;
  const double flops = 2.0 * double(kHeads) * double(kNope + kRope + kV) * pairs;
  // The backend's kernel (wgmma, kMlaPrefillWgmmaTileRows-row and 64-key tiles) under the plain name,
  // the other variants suffixed: _wgmma_tile<R>_keys<K> and the mma.sync kernel's _mma_tile<R>;
  // _fp8_model_carveout: the backend's kernel with the carveout preference an FP8 model sets at load
  // (kernels/smem_carveout.hpp: it held this kernel to one CTA an SM until the kernel asked for all
  // of shared memory; TROUPE_SMEM_CARVEOUT=50 forces the old behaviour for an A/B run).
  struct Variant {
    bool wgmma;
    int64_t rows, keys;
    bool fp8_model = false;
  };
  const Variant variants[] = {{true, 128, 128}, {true, 128, 64}, {true, 64, 64},
                              {true, 64, 64, true}, {false, 128, 0}, {false, 64, 0}};
  for (const Variant& v : variants) {
    const int64_t rows = v.rows;
    kernels::set_dependent_smem_carveout(v.fp8_model ? kernels::kFp8DecodeSmemCarveout : -1);
    const std::vector<int32_t> tiles = kernels::mla_prefill_tiles({{0, context, context, 0}}, rows);
    int32_t* d_tiles = upload(tiles);
    if (!d_tiles) return false;
    cudaError_t err = cudaSuccess;
    const int64_t num_tiles = int64_t(tiles.size()) / 4;
    const float scale = 0.1352f;
    auto attend = [&] {
      const cudaError_t e =
          v.wgmma ? kernels::launch_mla_prefill_wgmma(q, kv, k_pe, d_tiles, num_tiles, rows, kHeads, kNope, kRope, kV,
                                                      scale, out, nullptr, v.keys)
                  : kernels::launch_mla_prefill_mma(q, kv, k_pe, d_tiles, num_tiles, rows, kHeads, kNope, kRope, kV,
                                                    scale, out, nullptr);
      if (e != cudaSuccess) err = e;
    };
    const double ms = bench::time_events_ms(args.reps, attend);
    kernels::set_dependent_smem_carveout(-1);
    ok = ok && cuda_ok(err, "launch_mla_prefill") && cuda_ok(cudaDeviceSynchronize(), "mla_prefill");
    cudaFree(d_tiles);
    if (!ok) break;
    const double tflops = flops / (ms * 1e-3) / 1e12;
    const bool backends = v.wgmma && rows == kernels::kMlaPrefillWgmmaTileRows && v.keys == 64;
    char note[480];
    std::snprintf(note, sizeof(note),
                  "tensor-core MLA prefill kernel (%s bf16, flash, %lld-row tiles%s%s%s), one sequence of %lld "
                  "new tokens, 128 heads, qk 192 v 128; FLOPs = 2 H (192 + 128) x visible pairs = %.3g; limit = "
                  "bf16 cuBLAS GEMM rate at 8192^3, this run; %.1f us",
                  v.wgmma ? "wgmma" : "mma.sync", (long long)rows,
                  v.wgmma ? (v.keys == 128 ? ", 128-key tiles" : ", 64-key tiles") : "",
                  backends ? ", the backend's on Hopper" : "",
                  v.fp8_model ? ", under an FP8 model's decode carveout preference" : "", (long long)context, flops,
                  ms * 1e3);
    std::string metric = "dsv3_mla_prefill_ctx" + std::to_string(context);
    if (v.fp8_model)
      metric += "_fp8_model_carveout";
    else if (!backends)
      metric += v.wgmma ? "_wgmma_tile" + std::to_string(rows) + "_keys" + std::to_string(v.keys)
                        : "_mma_tile" + std::to_string(rows);
    BenchRecord r{metric, tflops, "TFLOP/s", bf16_tflops, tflops / bf16_tflops, note};
    r.extra = {{"us", ms * 1e3}, {"flops", flops}};
    add_record(r);
  }
  if (ok) {
    char note[400];
    const double expand_flops = 2.0 * double(context) * double(kLora) * double(kv_width);
    const double expand_tflops = expand_flops / (expand_ms * 1e-3) / 1e12;
    std::snprintf(note, sizeof(note),
                  "K/V expansion before the prefill kernel: latent [%lld, 512] @ kv_b_proj^T [512, 32768], "
                  "cublasGemmEx bf16 -> bf16; limit = bf16 cuBLAS GEMM rate at 8192^3, this run; %.1f us",
                  (long long)context, expand_ms * 1e3);
    BenchRecord e{"dsv3_mla_prefill_expand_ctx" + std::to_string(context), expand_tflops, "TFLOP/s", bf16_tflops,
                  expand_tflops / bf16_tflops, note};
    e.extra = {{"us", expand_ms * 1e3}, {"flops", expand_flops}};
    add_record(e);
  }
  for (void* p : {static_cast<void*>(q), static_cast<void*>(latent), static_cast<void*>(w), static_cast<void*>(kv),
                  static_cast<void*>(k_pe), static_cast<void*>(out)})
    cudaFree(p);
  return ok;
}

int run(int argc, char** argv) {
  Args args;
  if (!parse(argc, argv, args)) {
    std::fprintf(stderr, "usage: dsv3_mla_bench [--reps N] [--block-size N] [--out PATH] [--time-limit S]\n");
    return 2;
  }
  bench::init_log("dsv3_mla", args.out, args.command, args.time_limit_s);
  bench::start_watchdog();
  cudaDeviceProp prop{};
  if (!cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) return 1;
  bench::set_log_device(prop.name);
  say("device %s, %d SMs, L2 %d MB", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  const double hbm_gbs = bench::measure_bandwidth();
  if (hbm_gbs <= 0) return 1;
  add_record({"hbm_bandwidth", hbm_gbs, "GB/s", {}, {},
              "the HBM limit: the better of hbm_copy_bandwidth and hbm_read_bandwidth (bench/README.md)"});
  const double bf16_tflops = bench::measure_matmul().second;
  if (bf16_tflops > 0)
    add_record({"bf16_matmul_rate", bf16_tflops, "TFLOP/s", {}, {},
                "cublasGemmEx bf16 -> fp32 accumulation at 8192^3, median of 10 (the decode's compute ceiling and the prefill's limit)"});
  std::mt19937 rng(2024);
  bool ok = true;
  for (int64_t batch : {1, 64, 128})
    for (int64_t context : {1024, 4096})
      ok = bench_decode(args, batch, context, hbm_gbs, bf16_tflops, prop.l2CacheSize, prop.multiProcessorCount, rng) &&
           ok;
  cublasHandle_t h = nullptr;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return 1;
  for (int64_t batch : {1, 8, 64, 128}) ok = bench_absorption(args, h, batch, hbm_gbs, prop.l2CacheSize) && ok;
  if (bf16_tflops > 0)
    for (int64_t context : {1024, 4096}) ok = bench_prefill(args, h, context, bf16_tflops, rng) && ok;
  cublasDestroy(h);
  say("done in %.1f s", bench::elapsed_s());
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace troupe

int main(int argc, char** argv) { troupe::bench::finish(troupe::run(argc, argv)); }
