// CudaBackend::moe_experts_prefill: the grouped FP8 experts of prefill-sized batches. The tokens'
// slots are sorted by expert (kernels/moe_align, no padding), gathered and quantized in that order
// with each expert's scales laid out as its own operand (kernels/moe_segment_quant), and then each
// expert's contiguous rows go through two FP8 block GEMMs (gate_up, then silu * up quantized in one
// pass over every row, then down): on Hopper one grouped wgmma launch per product over all the
// experts' 64-row tiles (kernels/moe_grouped_gemm); elsewhere one GEMM per expert (cuBLASLt's
// block-scaled GEMM at R1's shapes) enqueued by ExpertStreams' worker threads on their side streams),
// and one combine writes the weighted sums. The rows' counts come to the host once a layer (the GEMM
// sizes); no other host work, and an expert with no row launches nothing. The shared expert, when
// packed, is one more expert with every token.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "backends/cuda/cuda_backend.hpp"
#include "kernels/fp8_quant.hpp"
#include "kernels/moe_align.hpp"
#include "kernels/moe_combine.hpp"
#include "kernels/moe_grouped_gemm.hpp"
#include "kernels/moe_grouped_gemv.hpp"
#include "kernels/moe_segment_quant.hpp"

namespace troupe::cuda {

bool CudaBackend::moe_experts_prefill(const Tensor& x, const Tensor& topk_ids, const Tensor& topk_weights,
                                      const MoeExperts& experts, int64_t expert_begin, Tensor out) {
  using namespace kernels;
  if (in_graph()) return false;  // the row counts come to the host
  const int64_t n = x.size(0), hidden = experts.hidden, inter = experts.intermediate, k = topk_ids.size(1);
  const int64_t with_shared = experts.has_shared ? 1 : 0, table_size = experts.num_local + with_shared;
  const int64_t slot_k = k + with_shared, slots = n * slot_k;
  if (slots > INT32_MAX) return false;
  const Tensor dx = on_device(x);
  Tensor ids = scratch(DType::i32, {n, slot_k}), weights = scratch(DType::f32, {n, slot_k});
  Tensor counts = scratch(DType::i32, {table_size}), offsets = scratch(DType::i32, {table_size + 1});
  Tensor sorted = scratch(DType::i32, {slots}), slot_pos = scratch(DType::i32, {slots});
  check(launch_moe_local_ids(topk_ids.data<int32_t>(), topk_weights.data<float>(), n, int32_t(k),
                             int32_t(expert_begin), int32_t(experts.num_local), with_shared != 0,
                             ids.data<int32_t>(), weights.data<float>(), stream()),
        "moe_local_ids");
  check(launch_moe_align(ids.data<int32_t>(), slots, int32_t(table_size), 1, counts.data<int32_t>(),
                         offsets.data<int32_t>(), sorted.data<int32_t>(), slots, slot_pos.data<int32_t>(), stream()),
        "moe_align");
  // The one host sync: where each expert's rows begin (another rank's slots were dropped).
  const Tensor host_offsets = to_host(offsets);
  if (!error_.empty()) return true;  // a failed launch or copy: recorded, the step fails
  const int32_t* off = host_offsets.data<int32_t>();
  const int64_t rows = off[table_size];

  const int64_t x_blocks = fp8_num_blocks(hidden), act_blocks = fp8_num_blocks(inter);
  Tensor x_fp8 = scratch(DType::f8_e4m3, {rows, hidden}), x_scale = scratch(DType::f32, {x_blocks * rows});
  Tensor gate_up = scratch(DType::bf16, {rows, 2 * inter});
  Tensor act_fp8 = scratch(DType::f8_e4m3, {rows, inter}), act_scale = scratch(DType::f32, {act_blocks * rows});
  Tensor y = scratch(DType::bf16, {rows, hidden});
  check(dx.dtype() == DType::bf16
            ? launch_moe_gather_quant(dx.data<uint16_t>(), sorted.data<int32_t>(), int32_t(slot_k),
                                      offsets.data<int32_t>(), int32_t(table_size), x_fp8.data<uint8_t>(),
                                      x_scale.data<float>(), rows, hidden, stream())
            : launch_moe_gather_quant(dx.data<float>(), sorted.data<int32_t>(), int32_t(slot_k),
                                      offsets.data<int32_t>(), int32_t(table_size), x_fp8.data<uint8_t>(),
                                      x_scale.data<float>(), rows, hidden, stream()),
        "moe_gather_quant");
  // Hopper: both products as one grouped launch each over the experts' 64-row tiles
  // (kernels/moe_grouped_gemm, wgmma). TROUPE_MOE_WGMMA=0 takes the per-expert GEMMs below instead:
  // a diagnostic for A/B runs (bench/dsv3_moe_bench), read at each call.
  const char* wgmma_env = std::getenv("TROUPE_MOE_WGMMA");
  if (!(wgmma_env && std::strcmp(wgmma_env, "0") == 0) && moe_grouped_gemm_supported(2 * inter, hidden) &&
      moe_grouped_gemm_supported(hidden, inter)) {
    static_assert(sizeof(MoeGemmTile) == 5 * sizeof(int32_t), "tiles travel as i32 words");
    // TROUPE_MOE_GEMM_TILE=128 or 192: 128- or 192-row tiles (two or three warpgroups a CTA), A/B
    // switches for the bench; else 64.
    const char* tile_env = std::getenv("TROUPE_MOE_GEMM_TILE");
    const int64_t tile_rows = tile_env && std::strcmp(tile_env, "128") == 0   ? 128
                              : tile_env && std::strcmp(tile_env, "192") == 0 ? 192
                                                                              : kMoeGemmTileRows;
    // The next K block's products run while one is promoted (moe_grouped_gemm.hpp);
    // TROUPE_MOE_GEMM_OVERLAP=0 turns that off, =serialized takes the loop before stop 43
    // (diagnostics for A/B runs).
    const char* overlap_env = std::getenv("TROUPE_MOE_GEMM_OVERLAP");
    const bool overlap = !(overlap_env && std::strcmp(overlap_env, "0") == 0);
    const std::vector<MoeGemmTile> tiles = moe_gemm_tiles(off, int32_t(table_size), tile_rows);
    std::vector<int32_t> tile_words(tiles.size() * 5);
    std::memcpy(tile_words.data(), tiles.data(), tile_words.size() * sizeof(int32_t));
    const Tensor d_tiles = on_device(Tensor::from_i32(tile_words, {int64_t(tile_words.size())}));
    const auto* table = static_cast<const uintptr_t*>(experts.table.raw());
    const auto* gu_w = reinterpret_cast<const uint8_t* const*>(table);
    const auto* gu_s = reinterpret_cast<const float* const*>(table + table_size);
    const auto* dn_w = reinterpret_cast<const uint8_t* const*>(table + 2 * table_size);
    const auto* dn_s = reinterpret_cast<const float* const*>(table + 3 * table_size);
    const auto* tile_ptr = reinterpret_cast<const MoeGemmTile*>(d_tiles.raw());
    const cudaError_t first = launch_moe_grouped_gemm(x_fp8.data<uint8_t>(), x_scale.data<float>(), gu_w, gu_s,
                                                      tile_ptr, int32_t(tiles.size()), tile_rows, gate_up.data<uint16_t>(),
                                                      2 * inter, hidden, stream(), overlap);
    if (first == cudaSuccess) {
      check(launch_moe_silu_quant(gate_up.data<uint16_t>(), offsets.data<int32_t>(), int32_t(table_size),
                                  act_fp8.data<uint8_t>(), act_scale.data<float>(), rows, inter, stream()),
            "moe_silu_quant");
      check(launch_moe_grouped_gemm(act_fp8.data<uint8_t>(), act_scale.data<float>(), dn_w, dn_s, tile_ptr,
                                    int32_t(tiles.size()), tile_rows, y.data<uint16_t>(), hidden, inter, stream(),
                                    overlap),
            "moe_grouped_gemm down");
      check(launch_moe_combine_bf16(y.data<uint16_t>(), slot_pos.data<int32_t>(), weights.data<float>(),
                                    with_shared ? nullptr : out.data<float>(), out.data<float>(), n,
                                    int32_t(slot_k), hidden, stream()),
            "moe_combine");
      return true;
    }
    if (first != cudaErrorNotSupported) {
      check(first, "moe_grouped_gemm gate_up");
      return true;
    }
    cudaGetLastError();  // another GPU than sm_90: the per-expert GEMMs
  }
  // The experts with rows, most rows first, dealt round ExpertStreams' workers and their streams
  // (one GEMM of ~128 rows fills a quarter of an H200; one thread cannot enqueue them fast enough).
  std::vector<int64_t> order;
  for (int64_t e = 0; e < table_size; ++e)
    if (off[e + 1] > off[e]) order.push_back(e);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return off[a + 1] - off[a] > off[b + 1] - off[b]; });
  // TROUPE_MOE_STREAMS=0 keeps them on the backend's stream and thread: a diagnostic for A/B runs
  // (bench/dsv3_moe_bench), read at each call.
  const char* streams_env = std::getenv("TROUPE_MOE_STREAMS");
  const bool side = !(streams_env && std::strcmp(streams_env, "0") == 0) &&
                    expert_streams_.ensure(device_index_) == cudaSuccess;
  if (!side) cudaGetLastError();  // not sticky: the GEMMs run on the backend's stream instead
  // Expert i's product on `on` with `lt` (experts.weights: gate_up, then down, of each table entry).
  auto product = [&](size_t i, bool down_proj, void* lt, CUstream_st* on, void* work, size_t work_bytes) {
    const int64_t e = order[i], first = off[e], m = off[e + 1] - off[e];
    const Tensor& w = experts.weights[size_t(2 * e + (down_proj ? 1 : 0))];
    if (!down_proj)
      return launch_fp8_product_bf16(lt, x_fp8.data<uint8_t>() + first * hidden,
                                     x_scale.data<float>() + x_blocks * first, w.data<uint8_t>(),
                                     w.block_scale().data<float>(), gate_up.data<uint16_t>() + first * 2 * inter, m,
                                     2 * inter, hidden, on, work, work_bytes);
    return launch_fp8_product_bf16(lt, act_fp8.data<uint8_t>() + first * inter,
                                   act_scale.data<float>() + act_blocks * first, w.data<uint8_t>(),
                                   w.block_scale().data<float>(), y.data<uint16_t>() + first * hidden, m, hidden,
                                   inter, on, work, work_bytes);
  };
  auto run_products = [&](bool down_proj) {
    if (!side) {
      for (size_t i = 0; i < order.size(); ++i)
        check(product(i, down_proj, cublas_, stream(), cublas_workspace_,
                      cublas_workspace_ ? kCublasWorkspaceBytes : 0),
              "moe expert product");
      return;
    }
    check(expert_streams_.fork(stream()), "expert streams fork");
    int errors[ExpertStreams::kThreads] = {};
    expert_streams_.run([&](int worker) {
      constexpr int kThreads = ExpertStreams::kThreads, kPer = ExpertStreams::kStreamsPerThread;
      for (size_t i = size_t(worker), j = 0; i < order.size(); i += kThreads, ++j) {
        const int lane = worker * kPer + int(j % kPer);
        const int err = product(i, down_proj, expert_streams_.lt_handle(worker), expert_streams_.stream(lane),
                                expert_streams_.workspace(lane), ExpertStreams::kWorkspaceBytes);
        if (err != 0 && errors[worker] == 0) errors[worker] = err;
      }
    });
    for (int err : errors) check(err, "moe expert product");
    check(expert_streams_.join(stream()), "expert streams join");
  };
  run_products(false);
  check(launch_moe_silu_quant(gate_up.data<uint16_t>(), offsets.data<int32_t>(), int32_t(table_size),
                              act_fp8.data<uint8_t>(), act_scale.data<float>(), rows, inter, stream()),
        "moe_silu_quant");
  run_products(true);
  // With the shared expert in the table the combine writes out; else it adds to the shared result.
  check(launch_moe_combine_bf16(y.data<uint16_t>(), slot_pos.data<int32_t>(), weights.data<float>(),
                                with_shared ? nullptr : out.data<float>(), out.data<float>(), n, int32_t(slot_k),
                                hidden, stream()),
        "moe_combine");
  return true;
}

}  // namespace troupe::cuda
