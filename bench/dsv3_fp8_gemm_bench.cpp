// DeepSeek-V3/R1 FP8 block-scaled linear layers on device 0 (kernels/fp8_block_gemm.hpp):
//   (a) the ceilings, measured here: HBM bandwidth (D2D copy) and the FP8 dense peak (a
//       per-tensor-scaled e4m3 cuBLASLt GEMM at 8192^3, best of 3);
//   (b) whether cuBLASLt runs block-scaled FP8 (BLK128x128 weights, VEC128 activations) here;
//   (c) prefill at M = --m (4096) on each R1 shape: the own kernel and, when the probe says yes,
//       cuBLASLt; dsv3_fp8_gemm_<name> records the faster in TFLOP/s against the FP8 peak, with
//       both rates, which one ran, and their largest relative difference;
//   (d) decode at M = 1, 8, 64: dsv3_fp8_gemv_<name>_m<M>, weight (+ scale) bytes per second
//       against the HBM bandwidth; weights span 4x the L2 so every launch reads HBM; at M = 1 and 8
//       (the f16 kernel by default) also the kernels below it, through TROUPE_FP8_GEMV_KERNEL:
//       dsv3_fp8_gemv_<name>_m1_rows (fp32 products on CUDA cores) and _m<M>_tiles (bf16 mma);
//   (e) dsv3_fp8_gemm_prefill_geomean: the geometric mean fraction of (c).
// A watchdog writes what was measured and exits at --time-limit (default 290 s).
//   dsv3_fp8_gemm_bench [--m 4096] [--decode-only 0|1] [--decode-shapes q_a,o,...] [--out PATH]
//                       [--time-limit S]
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_log.hpp"
#include "bench/device_ceilings.hpp"
#include "kernels/fp8_block_gemm.hpp"
#include "kernels/fp8_quant.hpp"
#include "kernels/host_bf16.hpp"
#include "runtime/bench_record.hpp"

namespace troupe {
namespace {

using bench::add_record;
using bench::cuda_ok;
using bench::say;
using bench::time_events_ms;

struct Shape {
  const char* name;
  int64_t n, k;
};
// R1's linear layers (N x K).
const Shape kShapes[] = {{"q_a", 1536, 7168},          {"q_b", 24576, 1536},        {"kv_a", 576, 7168},
                         {"kv_b", 32768, 512},         {"o", 7168, 16384},          {"dense_gate_up", 36864, 7168},
                         {"dense_down", 7168, 18432},  {"expert_gate_up", 4096, 7168}, {"expert_down", 7168, 2048}};

struct Args {
  int64_t m = 4096;
  bool decode_only = false;
  std::string decode_shapes;  // comma-separated names for (d); empty: all
  std::string out;
  double time_limit_s = 290;
  std::string command;
};

// A device buffer of `bytes` random finite e4m3 values (or fp32/bf16 of one value), freed at exit.
struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t bytes) {
    if (cudaMalloc(&p, std::max<size_t>(bytes, 16)) != cudaSuccess) p = nullptr;
  }
  ~DeviceBuffer() { cudaFree(p); }
  template <class T>
  T* as() const { return static_cast<T*>(p); }
};

void fill_e4m3(void* d, size_t bytes, std::mt19937& rng) {
  std::vector<uint8_t> host(std::min<size_t>(bytes, size_t(64) << 20));
  for (auto& b : host) b = uint8_t(rng()) & 0xf7;  // clears a mantissa bit: never S.1111.111 (NaN)
  for (size_t off = 0; off < bytes; off += host.size())
    cudaMemcpy(static_cast<uint8_t*>(d) + off, host.data(), std::min(host.size(), bytes - off), cudaMemcpyHostToDevice);
}
void fill_f32(void* d, size_t count, float v) {
  std::vector<float> host(count, v);
  cudaMemcpy(d, host.data(), count * 4, cudaMemcpyHostToDevice);
}

// Largest |a - b| / max|b| over two bf16 outputs.
double max_rel_diff(const uint16_t* a, const uint16_t* b, size_t count) {
  std::vector<uint16_t> ha(count), hb(count);
  cudaMemcpy(ha.data(), a, count * 2, cudaMemcpyDeviceToHost);
  cudaMemcpy(hb.data(), b, count * 2, cudaMemcpyDeviceToHost);
  double diff = 0, mag = 0;
  for (size_t i = 0; i < count; ++i) {
    const double x = kernels::host_bf16_to_f32(ha[i]), y = kernels::host_bf16_to_f32(hb[i]);
    diff = std::max(diff, std::fabs(x - y));
    mag = std::max(mag, std::fabs(y));
  }
  return mag > 0 ? diff / mag : diff;
}

// (c) One prefill shape; returns the fraction of the FP8 peak (0 when nothing ran).
double prefill(const Shape& s, int64_t m, double peak, bool lt_ok, cublasLtHandle_t lt, std::mt19937& rng) {
  const int64_t num_kb = kernels::fp8_num_blocks(s.k), w_blocks = kernels::fp8_num_blocks(s.n) * num_kb;
  DeviceBuffer x(size_t(m * s.k)), xs(size_t(num_kb * m) * 4), w(size_t(s.n * s.k)), ws(size_t(w_blocks) * 4);
  DeviceBuffer out(size_t(m * s.n) * 2), out_lt(size_t(m * s.n) * 2), lt_ws(size_t(32) << 20);
  if (!x.p || !xs.p || !w.p || !ws.p || !out.p || !out_lt.p || !lt_ws.p) {
    say("  %s: allocation failed", s.name);
    return 0;
  }
  fill_e4m3(x.p, size_t(m * s.k), rng);
  fill_e4m3(w.p, size_t(s.n * s.k), rng);
  fill_f32(xs.p, size_t(num_kb * m), 1.0f / 64);
  fill_f32(ws.p, size_t(w_blocks), 1.0f / 256);
  const double flops = 2.0 * double(m) * double(s.n) * double(s.k);
  cudaError_t err = cudaSuccess;
  const double own_ms = time_events_ms(10, [&] {
    const cudaError_t e = kernels::launch_fp8_block_gemm(x.as<uint8_t>(), xs.as<float>(), w.as<uint8_t>(),
                                                         ws.as<float>(), out.as<uint16_t>(), m, s.n, s.k, nullptr);
    if (e != cudaSuccess) err = e;
  });
  if (!cuda_ok(err, "launch_fp8_block_gemm") || !cuda_ok(cudaDeviceSynchronize(), "fp8 gemm")) return 0;
  const double own_tf = flops / (own_ms * 1e-3) / 1e12;
  double lt_tf = 0, diff = -1;
  if (lt_ok) {
    cudaError_t lt_err = cudaSuccess;
    const double lt_ms = time_events_ms(10, [&] {
      const cudaError_t e = kernels::launch_fp8_block_gemm_cublaslt(
          lt, x.as<uint8_t>(), xs.as<float>(), w.as<uint8_t>(), ws.as<float>(), out_lt.as<uint16_t>(), m, s.n, s.k,
          lt_ws.p, size_t(32) << 20, nullptr);
      if (e != cudaSuccess) lt_err = e;
    });
    if (lt_err == cudaSuccess && cuda_ok(cudaDeviceSynchronize(), "cublaslt")) {
      lt_tf = flops / (lt_ms * 1e-3) / 1e12;
      diff = max_rel_diff(out_lt.as<uint16_t>(), out.as<uint16_t>(), size_t(m * s.n));
    } else {
      say("  %s: cuBLASLt block-scaled failed: %s", s.name, cudaGetErrorString(lt_err));
    }
  }
  const bool lt_wins = lt_tf > own_tf;
  const double tf = std::max(own_tf, lt_tf);
  std::ostringstream note;
  note << "M=" << m << " N=" << s.n << " K=" << s.k << " e4m3 x e4m3 -> bf16, 128x128 weight and 1x128 activation scales; "
       << (lt_wins ? "cublaslt-blockscaled" : "own kernel (fp8_block_gemm.cu, mma.sync m16n8k32)") << " ran; own "
       << own_tf << " TFLOP/s, cuBLASLt " << (lt_ok ? std::to_string(lt_tf) : std::string("not supported"))
       << "; limit = per-tensor FP8 cuBLASLt 8192^3 measured here";
  BenchRecord r{std::string("dsv3_fp8_gemm_") + s.name, tf, "TFLOP/s", {}, {}, note.str(),
                {{"own_tflops", own_tf}, {"cublaslt_tflops", lt_tf}, {"cublaslt_ran", lt_wins ? 1.0 : 0.0},
                 {"max_rel_diff_cublaslt_vs_own", diff}}};
  if (peak > 0) {
    r.limit = peak;
    r.fraction_of_limit = tf / peak;
  }
  add_record(r);
  return peak > 0 ? tf / peak : 0;
}

// (d) One decode shape at m tokens: the weights in enough copies to span 4x the L2, used in turn;
// three untimed launches before each timed one keep the GPU busy while the host enqueues.
void decode(const Shape& s, int64_t m, double bw_gbs, int64_t l2_bytes, std::mt19937& rng, const char* suffix = "") {
  const int64_t w_blocks = kernels::fp8_num_blocks(s.n) * kernels::fp8_num_blocks(s.k);
  const int64_t bytes = s.n * s.k + w_blocks * 4;
  const int64_t copies = std::clamp<int64_t>((4 * l2_bytes + bytes - 1) / bytes, 1, 64);
  std::vector<std::unique_ptr<DeviceBuffer>> w, ws;
  for (int64_t c = 0; c < copies; ++c) {
    w.push_back(std::make_unique<DeviceBuffer>(size_t(s.n * s.k)));
    ws.push_back(std::make_unique<DeviceBuffer>(size_t(w_blocks) * 4));
    if (!w.back()->p || !ws.back()->p) return say("  %s m=%lld: allocation failed", s.name, (long long)m);
    fill_e4m3(w.back()->p, size_t(s.n * s.k), rng);
    fill_f32(ws.back()->p, size_t(w_blocks), 1.0f / 256);
  }
  const size_t work_bytes = kernels::fp8_block_gemv_workspace_bytes(m, s.n, s.k);
  DeviceBuffer x(size_t(m * s.k) * 2), out(size_t(m * s.n) * 2), work(work_bytes);
  std::vector<uint16_t> hx(size_t(m * s.k));
  for (auto& v : hx) v = kernels::host_f32_to_bf16(float(int(rng() % 2001) - 1000) * 1e-3f);
  cudaMemcpy(x.p, hx.data(), hx.size() * 2, cudaMemcpyHostToDevice);
  int64_t next = 0;
  cudaError_t err = cudaSuccess;
  auto launch = [&] {
    const cudaError_t e = kernels::launch_fp8_block_gemv(x.as<uint16_t>(), w[size_t(next)]->as<uint8_t>(),
                                                         ws[size_t(next)]->as<float>(), out.as<uint16_t>(), m, s.n,
                                                         s.k, work.p, work_bytes, nullptr);
    if (e != cudaSuccess) err = e;
    next = (next + 1) % copies;
  };
  constexpr int kReps = 25, kPadding = 3;
  std::vector<cudaEvent_t> events(2 * kReps, nullptr);
  for (auto& e : events) cudaEventCreate(&e);
  for (int64_t i = 0; i < copies + kPadding; ++i) launch();  // warm-up
  for (int rep = 0; rep < kReps; ++rep) {
    for (int p = 0; p < kPadding; ++p) launch();
    cudaEventRecord(events[size_t(2 * rep)]);
    launch();
    cudaEventRecord(events[size_t(2 * rep + 1)]);
  }
  const bool synced = cuda_ok(cudaDeviceSynchronize(), "fp8 gemv");
  std::vector<double> times;
  for (int rep = 0; synced && rep < kReps; ++rep) {
    float t = 0;
    cudaEventElapsedTime(&t, events[size_t(2 * rep)], events[size_t(2 * rep + 1)]);
    times.push_back(t);
  }
  for (auto& e : events) cudaEventDestroy(e);
  const double ms = bench::median(times);
  if (!cuda_ok(err, "launch_fp8_block_gemv") || ms <= 0) return;
  const double gbs = double(bytes) / (ms * 1e-3) / 1e9;
  std::ostringstream note;
  note << "launch_fp8_block_gemv, bf16 x [" << m << " x " << s.k << "] -> bf16, W [" << s.n << " x " << s.k
       << "] e4m3 + scales (" << double(bytes) / 1e6 << " MB) from HBM (" << copies
       << " copies in turn), median of 25; limit = HBM bandwidth measured here";
  BenchRecord r{std::string("dsv3_fp8_gemv_") + s.name + "_m" + std::to_string(m) + suffix, gbs, "GB/s", {}, {},
                note.str() + (*suffix ? std::string(" (TROUPE_FP8_GEMV_KERNEL=") + (suffix + 1) + ")" : std::string()),
                {{"us", ms * 1e3}, {"workspace_bytes", double(work_bytes)}}};
  if (bw_gbs > 0) {
    r.limit = bw_gbs;
    r.fraction_of_limit = gbs / bw_gbs;
  }
  add_record(r);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 0; i < argc; ++i) a.command += (i ? " " : "") + std::string(argv[i]);
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--m") a.m = std::atoll(argv[i + 1]);
    else if (k == "--decode-only") a.decode_only = std::atoi(argv[i + 1]) != 0;
    else if (k == "--decode-shapes") a.decode_shapes = "," + std::string(argv[i + 1]) + ",";
    else if (k == "--out") a.out = argv[i + 1];
    else if (k == "--time-limit") a.time_limit_s = std::atof(argv[i + 1]);
    else say("unknown flag %s", k.c_str());
  }
  return a;
}

int run(const Args& args) {
  bench::init_log("dsv3_fp8_gemm", args.out, args.command, args.time_limit_s);
  bench::start_watchdog();
  cudaDeviceProp prop{};
  if (!cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) return 1;
  bench::set_log_device(prop.name);
  say("device %s (sm_%d%d), prefill M = %lld", prop.name, prop.major, prop.minor, (long long)args.m);

  // (a)
  const double bw = bench::measure_bandwidth();
  if (bw > 0) add_record({"hbm_bandwidth", bw, "GB/s", {}, {}, "the HBM limit: the better of hbm_copy_bandwidth and hbm_read_bandwidth (bench/README.md)"});
  const double peak = bench::measure_fp8_matmul(3);
  if (peak > 0)
    add_record({"matmul_fp8_tflops", peak, "TFLOP/s", {}, {},
                "cublasLtMatmul e4m3 TN per-tensor scales, bf16 out, fp32 accumulation, 8192^3, best of 3 medians of 10"});

  // (b)
  cublasLtHandle_t lt = nullptr;
  if (cublasLtCreate(&lt) != CUBLAS_STATUS_SUCCESS) lt = nullptr;
  int supported = 0;
  std::vector<bool> lt_shape;  // per shape: cuBLASLt's block-scaled GEMM has an algorithm and troupe uses it
  for (const Shape& s : kShapes) {
    const cudaError_t e = lt ? kernels::fp8_block_gemm_cublaslt_probe(lt, args.m, s.n, s.k, true) : cudaErrorNotSupported;
    say("  cuBLASLt block-scaled probe %s (M %lld, N %lld, K %lld): %s", s.name, (long long)args.m, (long long)s.n,
        (long long)s.k, cudaGetErrorString(e));
    supported += e == cudaSuccess;
    lt_shape.push_back(e == cudaSuccess);
  }
  add_record({"dsv3_fp8_cublaslt_blockscaled_probe", double(supported), "shapes", double(std::size(kShapes)), {},
              "cublasLtMatmulAlgoGetHeuristic with A scale BLK128x128_32F (weights), B scale VEC128_32F "
              "(activations), e4m3 TN, bf16 out: shapes with an algorithm"});

  // (c) + (e)
  std::mt19937 rng(7);
  std::vector<double> fractions;
  for (size_t i = 0; i < std::size(kShapes) && !args.decode_only; ++i) {
    if (bench::remaining_s() < 60) break;
    const double f = prefill(kShapes[i], args.m, peak, lt_shape[i], lt, rng);
    if (f > 0) fractions.push_back(f);
  }
  if (!fractions.empty()) {
    double log_sum = 0;
    for (double f : fractions) log_sum += std::log(f);
    const double geo = std::exp(log_sum / double(fractions.size()));
    add_record({"dsv3_fp8_gemm_prefill_geomean", geo, "fraction", 1.0, geo,
                "geometric mean over the prefill shapes of TFLOP/s / FP8 dense peak",
                {{"shapes", double(fractions.size())}}});
  }
  // (d)
  for (const Shape& s : kShapes)
    for (int64_t m : {1, 8, 64}) {
      if (!args.decode_shapes.empty() && args.decode_shapes.find("," + std::string(s.name) + ",") == std::string::npos)
        continue;
      if (bench::remaining_s() < 20) break;
      decode(s, m, bw, int64_t(prop.l2CacheSize), rng);
      for (const char* kernel : {"rows", "tiles"}) {
        if (m > 8 || (m > 1 && std::string(kernel) == "rows")) continue;
        setenv("TROUPE_FP8_GEMV_KERNEL", kernel, 1);
        decode(s, m, bw, int64_t(prop.l2CacheSize), rng, (std::string("_") + kernel).c_str());
        unsetenv("TROUPE_FP8_GEMV_KERNEL");
      }
    }
  if (lt) cublasLtDestroy(lt);
  bench::finish(0);
}

}  // namespace
}  // namespace troupe

int main(int argc, char** argv) { return troupe::run(troupe::parse(argc, argv)); }
