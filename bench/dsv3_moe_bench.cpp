// DeepSeek-V3/R1's MoE layer on one GPU at R1's shapes (E=256 in 8 groups, keep 4, k=8, hidden
// 7168, moe_intermediate 2048, one shared expert), per batch B of decode tokens. Two parts:
//
// (1) dsv3_moe_decode_b<B>: the whole routed layer as the model runs it through CudaBackend
//     (bf16 weights mode, FP8 block-scaled experts) as models/moe does: router (linear over the
//     bf16 gate), moe_route, and moe_experts with the shared expert packed along
//     (kernels/moe_grouped_gemv: local ids, align, active experts, scaled gather, grouped gate/up +
//     silu, grouped down, combine writing shared + routed), no host sync.
//     limit = the bytes of the experts the router touched + the shared expert + the router's weight
//     at the HBM bandwidth measured here; fraction_of_limit = limit / time. dsv3_moe_experts_b<B>:
//     moe_experts alone against the touched + shared experts' bytes. At B = 1 moe_experts takes the
//     one-token launches (kernels/moe_f16_gemv; kernels/moe_rows_gemv under
//     TROUPE_MOE_ONE_TOKEN_KERNEL=rows, which the records' notes name); dsv3_moe_decode_b1_rows_off and
//     dsv3_moe_experts_b1_rows_off time the same token and routing with TROUPE_MOE_ROWS=0 (the
//     grouped kernels), so one run compares the two. Batches of 2..kMoeF16MaxTokens run moe_f16_gemv
//     too (units of an expert's positions); _f16_off records time them on the grouped kernels
//     (TROUPE_MOE_F16_BATCH=0). Up to 8 tokens, _shared_ahead records time the layer with the shared
//     expert started on a second stream beside the router and the routing
//     (TROUPE_MOE_SHARED_AHEAD=1, CudaBackend::moe_shared_ahead); from 9 tokens, _crowded_off records
//     time it with one CTA a unit however many units there are (TROUPE_MOE_F16_CROWDED=0, the rule
//     before kernels/moe_f16_gemv.cu's units_share).
// (2) dsv3_moe_routing_b<B>: the non-GEMM kernels (route, align pad 128, gather, combine) back to
//     back and per stage (_route, _align, _gather, _combine), each against its bytes.
// (3) dsv3_moe_prefill_<N> (--prefill N, default 4096; 0: none): the routed layer's experts at a
//     prefill of N tokens (CudaBackend::moe_experts over kMoeExpertsMaxTokens: the tokens sorted by
//     expert, quantized, one FP8 block GEMM per active expert for gate_up and down, the combine),
//     the FLOPs of the chosen and the shared experts' products against the FP8 dense peak measured
//     here (measure_fp8_matmul); fraction_of_limit = limit / time. The same tokens on the diagnostic
//     paths: dsv3_moe_prefill_<N>_overlap_off (TROUPE_MOE_GEMM_OVERLAP=0: each K block's
//     products waited for before their promotion), _overlap_serialized (=serialized: the overlap
//     loop before stop 43, whose wgmma ptxas serialized), _tile128 (TROUPE_MOE_GEMM_TILE=128: the grouped GEMM's 128-row
//     tiles), dsv3_moe_prefill_<N>_wgmma_off (TROUPE_MOE_WGMMA=0: one cuBLASLt GEMM per expert,
//     enqueued by four threads on eight streams) and _wgmma_streams_off (those on one stream and
//     thread, + TROUPE_MOE_STREAMS=0).
// Times: the decode layers (1) as decode steps run them, a step graph replayed --reps times back to
// back per round, median of 5 rounds (records _eager beside: each call launched eagerly between CUDA
// events and synchronized, median of --reps, which adds the host's launch time to the layer's); (2)
// and (3) CUDA events, median of --reps. Checks the device router and grouping against the CPU
// references on each batch.
//   dsv3_moe_bench [--reps N] [--batches 1,8,64,256] [--prefill N] [--out PATH] [--time-limit S]
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_args.hpp"
#include "bench/bench_log.hpp"
#include "bench/device_ceilings.hpp"
#include "backends/cuda/cuda_backend.hpp"
#include "kernels/fp8_gemv_f16.hpp"
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
constexpr int64_t kHidden = 7168, kInter = 2048;
constexpr float kScaling = 2.5f;
// Rows per expert are padded to the expert GEMM's M tile (a contiguous grouped GEMM's layout).
constexpr int32_t kGemmRowBlock = 128;

struct Args {
  int reps = 50;
  std::vector<int64_t> batches = {1, 8, 64, 256};
  int64_t prefill = 4096;
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
    else if (k == "--batches") a.batches = bench::parse_int_list(v);
    else if (k == "--prefill") a.prefill = std::max<int64_t>(0, std::atoll(v.c_str()));
    else return false;
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

// The expert MLPs over the padded layout: left out of this part (the decode layer of part (1) runs
// the grouped expert kernels over moe_align's unpadded layout); y_perm holds random values.
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
    std::string note = stage.name[0] ? "one kernel" : "route + align(pad 128) + gather + combine back to back (no expert GEMMs: see dsv3_moe_decode_b*)";
    note += "; CUDA events, median of ";
    note += std::to_string(args.reps);
    note += "; limit = bytes it must move / measured HBM bandwidth";
    BenchRecord r{base + stage.name, us, "us", limit_us, us > 0 ? limit_us / us : 0, note,
                  {{"tokens", double(b)}, {"bytes", stage.bytes}, {"ids_match_ref", ids_ok ? 1.0 : 0.0}}};
    add_record(std::move(r));
  }
}

// R1's routed experts, the shared expert and the router on the GPU (random values; every expert
// its own FP8 allocations with their block scales, as the model's loader leaves them).
struct DecodeLayer {
  std::unique_ptr<cuda::CudaBackend> gpu;
  std::vector<Tensor> gate_up, down;  // [2 I, hidden], [hidden, I] e4m3 with block scales
  Tensor shared_gate_up, shared_down, router, bias;
  MoeExperts packed;
  double expert_bytes = 0;  // one expert's weights + scales
};

Tensor random_fp8_expert(cuda::CudaBackend& gpu, int64_t rows, int64_t cols, const Tensor& source, std::mt19937& rng) {
  Tensor w = gpu.empty(DType::f8_e4m3, {rows, cols});
  cudaMemcpy(w.raw(), source.raw(), size_t(rows * cols), cudaMemcpyDeviceToDevice);
  const int64_t rb = (rows + 127) / 128, cb = (cols + 127) / 128;
  std::uniform_real_distribution<float> unit(0.5f / 1024, 2.0f / 1024);
  std::vector<float> scale(size_t(rb * cb));
  for (float& v : scale) v = unit(rng);
  Tensor s = gpu.empty(DType::f32, {rb, cb});
  cudaMemcpy(s.raw(), scale.data(), scale.size() * 4, cudaMemcpyHostToDevice);
  w.set_block_scale(std::move(s));
  return w;
}

bool make_decode_layer(DecodeLayer& l, std::mt19937& rng) {
  auto created = cuda::CudaBackend::create(0, DType::bf16);
  if (!created.ok()) {
    say("CudaBackend: %s", created.error().message.c_str());
    return false;
  }
  l.gpu = std::move(created.value());
  cuda::CudaBackend& gpu = *l.gpu;
  // One random e4m3 pattern (no NaN) of the largest matrix, copied into every expert.
  const int64_t biggest = 2 * kInter * kHidden;
  std::vector<uint8_t> bytes(static_cast<size_t>(biggest));
  for (auto& b : bytes) b = uint8_t((rng() % 0x7E) | (rng() % 2 ? 0x80 : 0));
  Tensor source = gpu.empty(DType::u8, {biggest});
  cudaMemcpy(source.raw(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice);
  for (int32_t e = 0; e < kExperts; ++e) {
    l.gate_up.push_back(random_fp8_expert(gpu, 2 * kInter, kHidden, source, rng));
    l.down.push_back(random_fp8_expert(gpu, kHidden, kInter, source, rng));
  }
  l.shared_gate_up = random_fp8_expert(gpu, 2 * kInter, kHidden, source, rng);
  l.shared_down = random_fp8_expert(gpu, kHidden, kInter, source, rng);
  l.expert_bytes = double(3 * kInter * kHidden) + double(l.gate_up[0].block_scale().nbytes() +
                                                         l.down[0].block_scale().nbytes());
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> router(size_t(kExperts * kHidden));
  // Router logits ~N(0, 0.85) per expert and small biases: sigmoid scores spread over (0.2, 0.8),
  // so each token's top-8 is its own (balanced routing, as R1's trained router gives); larger
  // weights saturate the scores to 1.0, whose ties all go to the lowest experts.
  for (auto& v : router) v = kernels::host_f32_to_bf16(0.01f * normal(rng));
  l.router = gpu.empty(DType::bf16, {kExperts, kHidden});
  cudaMemcpy(l.router.raw(), router.data(), router.size() * 2, cudaMemcpyHostToDevice);
  std::vector<float> bias(kExperts);
  for (float& v : bias) v = 0.01f * normal(rng);
  l.bias = gpu.empty(DType::f32, {kExperts});
  cudaMemcpy(l.bias.raw(), bias.data(), bias.size() * 4, cudaMemcpyHostToDevice);
  auto packed = gpu.pack_moe_experts(l.gate_up, l.down, l.shared_gate_up, l.shared_down);
  if (!packed.ok()) {
    say("pack_moe_experts: %s", packed.error().message.c_str());
    return false;
  }
  l.packed = std::move(packed.value());
  if (!l.packed.has_shared) say("the shared expert was not packed along");
  return bench::cuda_ok(cudaDeviceSynchronize(), "decode layer setup") && gpu.status().ok();
}

// `fn` as a decode step runs it (GraphedModel): recorded once as a step graph, then replayed;
// `reps` replays enqueued back to back (the host's share of each, the ops' bookkeeping, overlaps
// the device's previous replay, as in serving), total time / reps, the median of 5 such rounds.
// 0 when the recording or a replay fails.
double time_step_graph_us(cuda::CudaBackend& gpu, int64_t key, int reps, const std::function<bool()>& fn) {
  bool ok = true;
  auto step = [&] {
    auto phase = gpu.begin_graph(key);
    if (!phase.ok()) {
      ok = false;
      return;
    }
    const bool ran = fn();
    ok = gpu.end_graph(ran).ok() && ran && ok;
  };
  step();  // records
  step();  // the first replay
  if (!bench::cuda_ok(cudaDeviceSynchronize(), "step graph") || !ok) {
    gpu.drop_graphs();
    return 0;
  }
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<double> rounds;
  for (int r = 0; r < 5 && ok; ++r) {
    cudaEventRecord(a, gpu.stream());
    for (int i = 0; i < reps; ++i) step();
    cudaEventRecord(b, gpu.stream());
    cudaEventSynchronize(b);
    float ms = 0;
    cudaEventElapsedTime(&ms, a, b);
    rounds.push_back(double(ms) * 1e3 / reps);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  gpu.drop_graphs();
  return ok ? bench::median(rounds) : 0;
}

// suffix: appended to the records' names (a run under a diagnostic setting).
void bench_decode_layer(int64_t b, DecodeLayer& l, const Args& args, double bw_gbs, std::mt19937& rng,
                        const std::string& suffix = "") {
  cuda::CudaBackend& gpu = *l.gpu;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> xh(size_t(b * kHidden));
  for (auto& v : xh) v = kernels::host_f32_to_bf16(normal(rng));
  Tensor x = gpu.empty(DType::bf16, {b, kHidden});
  cudaMemcpy(x.raw(), xh.data(), xh.size() * 2, cudaMemcpyHostToDevice);
  Tensor logits = gpu.empty(DType::f32, {b, kExperts}), out = gpu.empty(DType::f32, {b, kHidden});
  Tensor ids = gpu.empty(DType::i32, {b, kTopK}), weights = gpu.empty(DType::f32, {b, kTopK});
  const MoeRouteParams params{kExperts, kGroups, kTopkGroup, kTopK, true, kScaling};
  bool ok = true;
  auto routed = [&] { ok = ok && gpu.moe_experts(x, ids, weights, l.packed, 0, kExperts, out); };
  auto layer = [&] {  // as models/moe.cpp's MoeMlp::forward
    if (!l.packed.has_shared) gpu.mlp(x, l.shared_gate_up, Tensor(), l.shared_down, Tensor(), out);
    const bool ahead = l.packed.has_shared && gpu.moe_shared_ahead(x, l.packed, out);
    gpu.linear(x, l.router, Tensor(), logits);
    ok = ok && gpu.moe_route(logits, l.bias, params, ids, weights);
    routed();
    if (ahead) gpu.moe_shared_join();  // no-op unless moe_experts refused
  };
  layer();
  if (!bench::cuda_ok(cudaDeviceSynchronize(), "decode layer") || !ok || !gpu.status().ok()) {
    say("B=%lld: the decode layer failed (%s)", (long long)b, ok ? gpu.take_error().c_str() : "an op refused");
    return;
  }
  // The experts the router touched.
  const Tensor host_ids = gpu.to_host(ids);
  std::vector<bool> touched(kExperts, false);
  for (int64_t i = 0; i < b * kTopK; ++i) touched[size_t(host_ids.data<int32_t>()[i])] = true;
  const double num_touched = double(std::count(touched.begin(), touched.end(), true));
  const double experts_bytes = (num_touched + (l.packed.has_shared ? 1 : 0)) * l.expert_bytes;
  const double layer_bytes = (num_touched + 1) * l.expert_bytes + double(kExperts * kHidden * 2);
  const double eager_layer_us = bench::time_events_ms(args.reps, layer) * 1e3;
  const double eager_experts_us = bench::time_events_ms(args.reps, routed) * 1e3;
  const double layer_us = time_step_graph_us(gpu, 1000 + b, args.reps, [&] {
    layer();
    return ok;
  });
  const double experts_us = time_step_graph_us(gpu, 2000 + b, args.reps, [&] {
    routed();
    return ok;
  });
  if (layer_us <= 0 || experts_us <= 0 || !ok) {
    say("B=%lld: the layer failed as a step graph (%s)", (long long)b, gpu.take_error().c_str());
    return;
  }
  const double layer_limit = bw_gbs > 0 ? layer_bytes / (bw_gbs * 1e9) * 1e6 : 0;
  const double experts_limit = bw_gbs > 0 ? experts_bytes / (bw_gbs * 1e9) * 1e6 : 0;
  say("B=%lld%s: %.0f experts touched; layer %.1f us (%.2f of its bytes' time), routed experts %.1f us (%.2f); "
      "eager: layer %.1f us, experts %.1f us",
      (long long)b, suffix.c_str(), num_touched, layer_us, layer_limit / layer_us, experts_us,
      experts_limit / experts_us, eager_layer_us, eager_experts_us);
  const std::string reps = std::to_string(args.reps);
  const std::string path = cuda::CudaBackend::moe_decode_experts_path(b, kHidden, kInter);
  const std::string graph = "as a decode step runs it: a step graph, " + reps +
                            " replays back to back per round, time / replays, median of 5 rounds";
  const std::string eager = "eagerly launched: CUDA events around each call, synchronized, median of " + reps;
  const std::string layer_note = "one R1 MoE layer through CudaBackend (bf16 mode, FP8 experts): router linear + "
                                 "moe_route + moe_experts (" + path + " over the chosen and the shared experts, no "
                                 "host sync); limit = (touched experts + shared expert + router) bytes / measured "
                                 "HBM bandwidth; ";
  const std::string experts_note = "CudaBackend::moe_experts alone (local ids, align, active experts, scaled gather, " +
                                   path + " gate_up+silu and down, combine; the shared expert in the table); limit = "
                                   "touched + shared experts' FP8 weights + scales / measured HBM bandwidth; ";
  const std::string name = std::to_string(b) + suffix;
  const std::vector<std::pair<std::string, double>> layer_extra = {
      {"tokens", double(b)}, {"experts_touched", num_touched}, {"bytes", layer_bytes}};
  const std::vector<std::pair<std::string, double>> experts_extra = {
      {"tokens", double(b)}, {"experts_touched", num_touched}, {"bytes", experts_bytes}};
  add_record({"dsv3_moe_decode_b" + name, layer_us, "us", layer_limit, layer_limit / layer_us, layer_note + graph,
              layer_extra});
  add_record({"dsv3_moe_experts_b" + name, experts_us, "us", experts_limit, experts_limit / experts_us,
              experts_note + graph, experts_extra});
  add_record({"dsv3_moe_decode_b" + name + "_eager", eager_layer_us, "us", layer_limit,
              eager_layer_us > 0 ? layer_limit / eager_layer_us : 0, layer_note + eager, layer_extra});
  add_record({"dsv3_moe_experts_b" + name + "_eager", eager_experts_us, "us", experts_limit,
              eager_experts_us > 0 ? experts_limit / eager_experts_us : 0, experts_note + eager, experts_extra});
}


// (3) The routed experts of one layer at a prefill of n tokens, against the FP8 dense peak; and
// against its roofline, the larger of that and the bytes of every expert touched read once at the
// measured bandwidth (at 4,096 tokens an expert gets ~130 rows: the layer's 11 GB of weights take
// longer to read than its FLOPs to compute).
void bench_prefill_layer(int64_t n, DecodeLayer& l, const Args& args, double fp8_tflops, double bw_gbs,
                         std::mt19937& rng, const std::string& suffix = "") {
  cuda::CudaBackend& gpu = *l.gpu;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> xh(size_t(n * kHidden));
  for (auto& v : xh) v = kernels::host_f32_to_bf16(normal(rng));
  Tensor x = gpu.empty(DType::bf16, {n, kHidden});
  cudaMemcpy(x.raw(), xh.data(), xh.size() * 2, cudaMemcpyHostToDevice);
  Tensor logits = gpu.empty(DType::f32, {n, kExperts}), out = gpu.empty(DType::f32, {n, kHidden});
  Tensor ids = gpu.empty(DType::i32, {n, kTopK}), weights = gpu.empty(DType::f32, {n, kTopK});
  const MoeRouteParams params{kExperts, kGroups, kTopkGroup, kTopK, true, kScaling};
  gpu.linear(x, l.router, Tensor(), logits);
  bool ok = gpu.moe_route(logits, l.bias, params, ids, weights);
  auto routed = [&] { ok = ok && gpu.moe_experts(x, ids, weights, l.packed, 0, kExperts, out); };
  routed();
  if (!bench::cuda_ok(cudaDeviceSynchronize(), "prefill layer") || !ok || !gpu.status().ok()) {
    say("prefill %lld: the experts failed (%s)", (long long)n, ok ? gpu.take_error().c_str() : "an op refused");
    return;
  }
  const Tensor host_ids = gpu.to_host(ids);
  std::vector<int64_t> rows(kExperts, 0);
  for (int64_t i = 0; i < n * kTopK; ++i) ++rows[size_t(host_ids.data<int32_t>()[i])];
  const double active = double(std::count_if(rows.begin(), rows.end(), [](int64_t r) { return r > 0; }));
  const int64_t most = *std::max_element(rows.begin(), rows.end());
  // gate_up 2 x (2 I) x hidden and down 2 x hidden x I FLOPs a row; the shared expert takes every token.
  const double slots = double(n * kTopK + (l.packed.has_shared ? n : 0));
  const double flops = slots * 6.0 * double(kInter) * double(kHidden);
  const int reps = std::max(3, args.reps / 5);
  const double ms = bench::time_events_ms(reps, routed);
  // The host's share: the wall time of the call (launches and the one sync), the GPU idle before it.
  std::vector<double> host;
  for (int i = 0; i < reps; ++i) {
    cudaDeviceSynchronize();
    const auto t0 = std::chrono::steady_clock::now();
    routed();
    host.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  cudaDeviceSynchronize();
  const double host_ms = bench::median(host);
  const double limit_ms = fp8_tflops > 0 ? flops / (fp8_tflops * 1e12) * 1e3 : 0;
  say("prefill %lld tokens%s: %.0f experts active (most rows %lld), experts %.3f ms (the call on the host %.3f ms), "
      "%.0f TFLOP/s (%.3f of the FP8 peak)",
      (long long)n, suffix.c_str(), active, (long long)most, ms, host_ms, ms > 0 ? flops / (ms * 1e-3) / 1e12 : 0, ms > 0 ? limit_ms / ms : 0);
  add_record({"dsv3_moe_prefill_" + std::to_string(n) + suffix, ms, "ms", limit_ms, ms > 0 ? limit_ms / ms : 0,
              "CudaBackend::moe_experts at a prefill (local ids, align, one host sync for the row counts, gather + "
              "FP8 quantization in expert order, gate_up and down as grouped FP8 GEMMs (kernels/moe_grouped_gemm, or "
              "one cuBLASLt GEMM per expert on the diagnostic paths), silu*up + quantization, combine; the shared "
              "expert as one more expert of every token); limit = "
              "the chosen and shared experts' FLOPs / the FP8 dense peak measured here; CUDA events, median of " +
                  std::to_string(reps),
              {{"tokens", double(n)}, {"experts_active", active}, {"most_rows", double(most)}, {"flops", flops},
               {"host_ms", host_ms}}});
  const double bytes = (active + (l.packed.has_shared ? 1 : 0)) * l.expert_bytes;
  const double bytes_ms = bw_gbs > 0 ? bytes / (bw_gbs * 1e9) * 1e3 : 0, roofline_ms = std::max(bytes_ms, limit_ms);
  if (ms > 0 && roofline_ms > 0)
    add_record({"dsv3_moe_prefill_" + std::to_string(n) + suffix + "_vs_roofline", ms, "ms", roofline_ms,
                roofline_ms / ms,
                "the same experts' time against the larger of their FLOPs at the FP8 dense peak (" +
                    std::to_string(limit_ms) + " ms) and the bytes of every expert touched, read once at the HBM "
                    "bandwidth measured here (" + std::to_string(bytes / 1e9) + " GB, " + std::to_string(bytes_ms) +
                    " ms)",
                {{"bytes", bytes}, {"bytes_ms", bytes_ms}, {"flops_ms", limit_ms}}});
}

int run(int argc, char** argv) {
  Args args;
  if (!parse_args(argc, argv, args)) {
    std::fprintf(stderr, "usage: dsv3_moe_bench [--reps N] [--batches 1,8,64,256] [--prefill N] [--out PATH] [--time-limit S]\n");
    return 2;
  }
  bench::init_log("dsv3_moe", args.out, args.command, args.time_limit_s);
  bench::start_watchdog();
  cudaDeviceProp prop{};
  if (!bench::cuda_ok(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties")) return 1;
  bench::set_log_device(prop.name);
  const double bw_gbs = bench::measure_bandwidth();
  if (bw_gbs > 0) add_record({"hbm_bandwidth", bw_gbs, "GB/s", {}, {}, "the HBM limit: the better of hbm_copy_bandwidth and hbm_read_bandwidth (bench/README.md)"});
  say("%s, HBM %.0f GB/s; R1 MoE: E=%d, %d groups keep %d, k=%d, hidden %lld", prop.name, bw_gbs, kExperts, kGroups,
      kTopkGroup, kTopK, (long long)kHidden);
  std::mt19937 rng(1234);
  for (int64_t b : args.batches) bench_batch(b, args, bw_gbs, rng);
  DecodeLayer layer;
  if (!make_decode_layer(layer, rng)) return 1;
  say("decode layer: %d experts of %.1f MB each + a shared one, on the GPU", kExperts, layer.expert_bytes / 1e6);
  for (int64_t b : args.batches) {
    const std::mt19937 same_token = rng;  // the A/B run below gets the same x and routing
    bench_decode_layer(b, layer, args, bw_gbs, rng);
    if (b > cuda::CudaBackend::kMoeF16MaxTokens) continue;
    // The same tokens with `name`=`value` for one run, then as it was.
    auto again_with = [&](const char* name, const char* value, const char* suffix) {
      const char* before = std::getenv(name);
      const std::string saved = before ? before : "";
      ::setenv(name, value, 1);
      std::mt19937 again = same_token;
      bench_decode_layer(b, layer, args, bw_gbs, again, suffix);
      if (before)
        ::setenv(name, saved.c_str(), 1);
      else
        ::unsetenv(name);
    };
    // On the grouped kernels: _rows_off at one token, _f16_off above.
    again_with(b == 1 ? "TROUPE_MOE_ROWS" : "TROUPE_MOE_F16_BATCH", "0", b == 1 ? "_rows_off" : "_f16_off");
    if (b > kernels::kFp8GemvF16MaxTokens)  // one CTA a unit however many units (units_share's A/B)
      again_with("TROUPE_MOE_F16_CROWDED", "0", "_crowded_off");
    else  // the shared expert started beside the routing
      again_with("TROUPE_MOE_SHARED_AHEAD", "1", "_shared_ahead");
  }
  if (args.prefill > 0) {
    const double fp8_tflops = bench::measure_fp8_matmul();
    if (fp8_tflops > 0) add_record({"matmul_fp8_tflops", fp8_tflops, "TFLOP/s", {}, {}, "the FP8 dense peak (bench/device_ceilings.hpp)"});
    const std::mt19937 same_tokens = rng;
    bench_prefill_layer(args.prefill, layer, args, fp8_tflops, bw_gbs, rng);
    // The same tokens without the overlap, with 128- and 192-row tiles, and on the diagnostic paths:
    // one cuBLASLt GEMM per expert from four threads (TROUPE_MOE_WGMMA=0), and those on the
    // backend's one stream and thread (+ TROUPE_MOE_STREAMS=0).
    std::vector<std::pair<std::string, std::string>> saved;
    for (const char* name : {"TROUPE_MOE_WGMMA", "TROUPE_MOE_STREAMS", "TROUPE_MOE_GEMM_TILE", "TROUPE_MOE_GEMM_OVERLAP"}) {
      const char* v = std::getenv(name);
      saved.emplace_back(name, v ? v : "\x01");
    }
    ::setenv("TROUPE_MOE_GEMM_OVERLAP", "0", 1);
    std::mt19937 again = same_tokens;
    bench_prefill_layer(args.prefill, layer, args, fp8_tflops, bw_gbs, again, "_overlap_off");
    ::setenv("TROUPE_MOE_GEMM_OVERLAP", "serialized", 1);  // the overlap loop before stop 43
    again = same_tokens;
    bench_prefill_layer(args.prefill, layer, args, fp8_tflops, bw_gbs, again, "_overlap_serialized");
    ::unsetenv("TROUPE_MOE_GEMM_OVERLAP");
    ::setenv("TROUPE_MOE_GEMM_TILE", "128", 1);
    again = same_tokens;
    bench_prefill_layer(args.prefill, layer, args, fp8_tflops, bw_gbs, again, "_tile128");
    ::setenv("TROUPE_MOE_GEMM_TILE", "192", 1);  // three warpgroups a CTA, never overlapped
    again = same_tokens;
    bench_prefill_layer(args.prefill, layer, args, fp8_tflops, bw_gbs, again, "_tile192");
    ::unsetenv("TROUPE_MOE_GEMM_TILE");
    ::setenv("TROUPE_MOE_WGMMA", "0", 1);
    again = same_tokens;
    bench_prefill_layer(args.prefill, layer, args, fp8_tflops, bw_gbs, again, "_wgmma_off");
    ::setenv("TROUPE_MOE_STREAMS", "0", 1);
    again = same_tokens;
    bench_prefill_layer(args.prefill, layer, args, fp8_tflops, bw_gbs, again, "_wgmma_streams_off");
    for (const auto& [name, value] : saved) {
      if (value == "\x01") ::unsetenv(name.c_str());
      else ::setenv(name.c_str(), value.c_str(), 1);
    }
  }
  return 0;
}

}  // namespace
}  // namespace troupe

int main(int argc, char** argv) { troupe::bench::finish(troupe::run(argc, argv)); }
