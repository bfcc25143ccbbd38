// DeepSeek-V3/R1's MoE layer on one GPU, the non-GEMM half for now (kernels/moe_routing, moe_align,
// moe_combine) at R1's shapes (E=256 in 8 groups, keep 4, k=8, hidden 7168), per batch B of
// decode tokens:
//
//   logits [B, 256] --route--> ids, weights [B, 8] --align--> counts, offsets, sorted_slots, slot_pos
//   x [B, 7168] bf16 --gather--> x_perm [capacity, 7168] bf16
//   x_perm --[expert GEMMs: not here yet, see run_expert_gemms]--> y_perm [capacity, 7168] bf16
//   y_perm, weights, shared [B, 7168] fp32 --combine--> out [B, 7168] fp32
//
// Records dsv3_moe_routing_b<B> (the four kernels back to back, microseconds; CUDA events, median
// of --reps) and one per stage (_route, _align, _gather, _combine), each against the time its
// bytes take at the HBM bandwidth measured here (limit, us; fraction_of_limit = limit / value).
// First checks the device router and grouping against the CPU references on each batch.
//   dsv3_moe_bench [--reps N] [--batches 1,8,64,256] [--out PATH] [--time-limit S]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_log.hpp"
#include "bench/device_ceilings.hpp"
#include "kernels/host_bf16.hpp"
#include "kernels/moe_align.hpp"
#include "kernels/moe_combine.hpp"
#include "kernels/moe_routing.hpp"
#include "runtime/bench_record.hpp"

namespace troupe {
namespace {

using bench::add_record;
using bench::say;

// R1's router and MoE shapes.
constexpr int32_t kExperts = 256, kGroups = 8, kTopkGroup = 4, kTopK = 8;
constexpr int64_t kHidden = 7168;
constexpr float kScaling = 2.5f;
// Rows per expert are padded to the expert GEMM's M tile (a contiguous grouped GEMM's layout).
constexpr int32_t kGemmRowBlock = 128;

struct Args {
  int reps = 50;
  std::vector<int64_t> batches = {1, 8, 64, 256};
  std::string out;
  std::string command;
  double time_limit_s = 290;
};

bool parse_args(int argc, char** argv, Args& a) {
  for (int i = 0; i < argc; ++i) {
    if (i) a.command += ' ';
    a.command += argv[i];
  }
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) return false;
    const std::string v = argv[++i];
    if (k == "--reps") a.reps = std::max(1, std::atoi(v.c_str()));
    else if (k == "--out") a.out = v;
    else if (k == "--time-limit") a.time_limit_s = std::atof(v.c_str());
    else if (k == "--batches") {
      a.batches.clear();
      std::stringstream ss(v);
      for (std::string item; std::getline(ss, item, ',');) a.batches.push_back(std::atoll(item.c_str()));
    } else {
      return false;
    }
  }
  return true;
}

// Device buffers of one batch, freed together.
struct Buffers {
  std::vector<void*> owned;
  template <class T>
  T* alloc(size_t count) {
    void* p = nullptr;
    if (cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)) != cudaSuccess) return nullptr;
    owned.push_back(p);
    return static_cast<T*>(p);
  }
  template <class T>
  T* upload(const std::vector<T>& host) {
    T* d = alloc<T>(host.size());
    if (d) cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
    return d;
  }
  ~Buffers() {
    for (void* p : owned) cudaFree(p);
  }
};

// The expert MLPs over the permuted rows: NOT IMPLEMENTED HERE YET. The FP8 grouped GEMMs (another
// engineer's kernels) go here: gate_up = x_perm @ W_gate_up[e]^T per expert range
// [offsets[e], offsets[e] + counts[e]) (padding rows skipped or computed and ignored), then
// kernels/mlp_activation.hpp's launch_silu_and_mul_packed_bf16 over those rows (reuse it, do not
// write another), then y_perm = act @ W_down[e]^T. Until then y_perm holds random values and the
// timings below leave this stage out.
cudaError_t run_expert_gemms(const uint16_t* x_perm, const int32_t* counts, const int32_t* offsets, uint16_t* y_perm,
                             int64_t capacity, cudaStream_t stream) {
  (void)x_perm, (void)counts, (void)offsets, (void)y_perm, (void)capacity, (void)stream;
  return cudaSuccess;
}

void bench_batch(int64_t b, const Args& args, double bw_gbs, std::mt19937& rng) {
  const int64_t slots = b * kTopK, capacity = kernels::moe_align_capacity(slots, kExperts, kGemmRowBlock);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> logits(size_t(b * kExperts)), bias(kExperts), shared(size_t(b * kHidden));
  for (float& v : logits) v = 2.0f * normal(rng);
  for (float& v : bias) v = 0.1f * normal(rng);
  for (float& v : shared) v = normal(rng);
  std::vector<uint16_t> x(size_t(b * kHidden)), y(size_t(capacity * kHidden));
  for (uint16_t& v : x) v = kernels::host_f32_to_bf16(normal(rng));
  for (uint16_t& v : y) v = kernels::host_f32_to_bf16(normal(rng));

  Buffers d;
  const float* d_logits = d.upload(logits);
  const float* d_bias = d.upload(bias);
  const float* d_shared = d.upload(shared);
  const uint16_t* d_x = d.upload(x);
  uint16_t* d_y = d.upload(y);
  int32_t* ids = d.alloc<int32_t>(size_t(slots));
  float* weights = d.alloc<float>(size_t(slots));
  int32_t* counts = d.alloc<int32_t>(kExperts);
  int32_t* offsets = d.alloc<int32_t>(kExperts + 1);
  int32_t* sorted = d.alloc<int32_t>(size_t(capacity));
  int32_t* slot_pos = d.alloc<int32_t>(size_t(slots));
  uint16_t* x_perm = d.alloc<uint16_t>(size_t(capacity * kHidden));
  float* out = d.alloc<float>(size_t(b * kHidden));
  if (!d_logits || !d_bias || !d_shared || !d_x || !d_y || !ids || !weights || !counts || !offsets || !sorted ||
      !slot_pos || !x_perm || !out) {
    say("B=%lld: cudaMalloc failed", (long long)b);
    return;
  }
  const kernels::MoeRouteParams params{kExperts, kGroups, kTopkGroup, kTopK, true, kScaling};
  cudaStream_t s = nullptr;
  auto route = [&] { return kernels::launch_moe_route_f32(d_logits, d_bias, ids, weights, b, params, s); };
  auto align = [&] {
    return kernels::launch_moe_align(ids, slots, kExperts, kGemmRowBlock, counts, offsets, sorted, capacity, slot_pos, s);
  };
  auto gather = [&] { return kernels::launch_moe_gather_bf16(d_x, sorted, x_perm, capacity, kTopK, kHidden, s); };
  auto combine = [&] {
    return kernels::launch_moe_combine_bf16(d_y, slot_pos, weights, d_shared, out, b, kTopK, kHidden, s);
  };
  auto layer = [&] {
    cudaError_t e = route();
    if (e == cudaSuccess) e = align();
    if (e == cudaSuccess) e = gather();
    if (e == cudaSuccess) e = run_expert_gemms(x_perm, counts, offsets, d_y, capacity, s);
    if (e == cudaSuccess) e = combine();
    return e;
  };
  if (!bench::cuda_ok(layer(), "moe launch") || !bench::cuda_ok(cudaDeviceSynchronize(), "moe run")) return;

  // The device's choice and layout against the CPU references.
  const size_t num_slots = static_cast<size_t>(slots), num_positions = static_cast<size_t>(capacity);
  std::vector<int32_t> got_ids(num_slots), ref_ids(num_slots), got_sorted(num_positions), ref_sorted(num_positions),
      ref_pos(num_slots), ref_counts(kExperts), ref_offsets(kExperts + 1);
  std::vector<float> ref_weights(num_slots);
  cudaMemcpy(got_ids.data(), ids, num_slots * 4, cudaMemcpyDeviceToHost);
  cudaMemcpy(got_sorted.data(), sorted, num_positions * 4, cudaMemcpyDeviceToHost);
  kernels::moe_route_ref(logits.data(), bias.data(), ref_ids.data(), ref_weights.data(), b, params);
  kernels::moe_align_ref(ref_ids.data(), slots, kExperts, kGemmRowBlock, ref_counts.data(), ref_offsets.data(),
                         ref_sorted.data(), capacity, ref_pos.data());
  const bool ids_ok = got_ids == ref_ids, layout_ok = got_sorted == ref_sorted;
  say("B=%lld: device ids %s the reference's, layout %s (%lld positions padded to %d)", (long long)b,
      ids_ok ? "match" : "DIFFER FROM", layout_ok ? "matches" : "DIFFERS", (long long)ref_offsets[kExperts],
      kGemmRowBlock);

  // Bytes each stage must move at least (x read once, not once per expert).
  const double route_bytes = double(b * kExperts * 4 + kExperts * 4 + slots * 8);
  const double align_bytes = double(slots * 4 + kExperts * 8 + capacity * 4 + slots * 4);
  const double gather_bytes = double(b * kHidden * 2 + slots * kHidden * 2 + capacity * 4);
  const double combine_bytes = double(slots * kHidden * 2 + b * kHidden * 8 + slots * 8);
  struct Stage {
    const char* name;
    double bytes;
    std::function<cudaError_t()> fn;
  };
  const std::vector<Stage> stages = {{"", route_bytes + align_bytes + gather_bytes + combine_bytes, layer},
                                     {"_route", route_bytes, route},
                                     {"_align", align_bytes, align},
                                     {"_gather", gather_bytes, gather},
                                     {"_combine", combine_bytes, combine}};
  const std::string base = "dsv3_moe_routing_b" + std::to_string(b);
  for (const Stage& stage : stages) {
    const double us = bench::time_events_ms(args.reps, [&] { stage.fn(); }) * 1e3;
    const double limit_us = bw_gbs > 0 ? stage.bytes / (bw_gbs * 1e9) * 1e6 : 0;
    std::string note = stage.name[0] ? "one kernel" : "route + align + gather + combine back to back (no expert GEMMs yet)";
    note += "; CUDA events, median of ";
    note += std::to_string(args.reps);
    note += "; limit = bytes it must move / measured HBM bandwidth";
    BenchRecord r{base + stage.name, us, "us", limit_us, us > 0 ? limit_us / us : 0, note,
                  {{"tokens", double(b)}, {"bytes", stage.bytes}, {"ids_match_ref", ids_ok ? 1.0 : 0.0}}};
    add_record(std::move(r));
  }
}

int run(int argc, char** argv) {
  Args args;
  if (!parse_args(argc, argv, args)) {
    std::fprintf(stderr, "usage: dsv3_moe_bench [--reps N] [--batches 1,8,64,256] [--out PATH] [--time-limit S]\n");
    return 2;
  }
  bench::init_log("dsv3_moe", args.out, args.command, args.time_limit_s);
  bench::start_watchdog();
  cudaDeviceProp prop{};
  if (!bench::cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) return 1;
  bench::set_log_device(prop.name);
  const double bw_gbs = bench::measure_bandwidth();
  if (bw_gbs > 0) add_record({"hbm_bandwidth", bw_gbs, "GB/s", {}, {}, "cudaMemcpy D2D of 2 GiB, (read+write)/time, median of 10"});
  say("%s, HBM %.0f GB/s; R1 MoE: E=%d, %d groups keep %d, k=%d, hidden %lld", prop.name, bw_gbs, kExperts, kGroups,
      kTopkGroup, kTopK, (long long)kHidden);
  std::mt19937 rng(1234);
  for (int64_t b : args.batches) bench_batch(b, args, bw_gbs, rng);
  return 0;
}

}  // namespace
}  // namespace troupe

int main(int argc, char** argv) { troupe::bench::finish(troupe::run(argc, argv)); }
