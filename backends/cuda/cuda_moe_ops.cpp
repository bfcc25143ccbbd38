// CudaBackend's MoE ops over kernels/moe_*.hpp: the device router, and the grouped FP8 experts of
// decode-sized batches (align -> active experts -> scaled gather -> gate/up + silu -> down ->
// combine, eight launches, nothing on the host; the shared expert rides in the grouped launches;
// prefill-sized batches: cuda_moe_prefill.cpp).
// The experts' products: kernels/moe_f16_gemv where it takes the sizes (expert_kernels below).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/env_switch.hpp"
#include "kernels/moe_align.hpp"
#include "kernels/moe_combine.hpp"
#include "kernels/moe_f16_gemv.hpp"
#include "kernels/moe_grouped_gemv.hpp"
#include "kernels/moe_routing.hpp"
#include "kernels/moe_rows_gemv.hpp"
#include "kernels/plain_launches.hpp"

namespace troupe::cuda {

bool CudaBackend::moe_route(const Tensor& logits, const Tensor& bias, const MoeRouteParams& params, Tensor topk_ids,
                            Tensor topk_weights) {
  if (!logits.defined() || !bias.defined() || !topk_ids.defined() || !topk_weights.defined() ||
      logits.dtype() != DType::f32 || logits.dim() != 2 || bias.dtype() != DType::f32 ||
      topk_ids.dtype() != DType::i32 || topk_weights.dtype() != DType::f32 || topk_ids.device() != Device::cuda ||
      topk_weights.device() != Device::cuda)
    return false;
  const int64_t n = logits.size(0), num_experts = logits.size(1), k = params.top_k;
  const int64_t num_groups = std::max<int64_t>(1, params.num_groups);
  if (params.num_experts != num_experts || bias.numel() != num_experts || k < 1 || k > num_experts ||
      k > kernels::kMoeRouteMaxTopK || num_experts > kernels::kMoeRouteMaxExperts ||
      num_groups > kernels::kMoeRouteMaxGroups || num_experts % num_groups != 0 || topk_ids.numel() != n * k ||
      topk_weights.numel() != n * k)
    return false;
  kernels::MoeRouteParams p;
  p.num_experts = int32_t(num_experts);
  p.num_groups = int32_t(num_groups);
  p.topk_group = int32_t(std::clamp<int64_t>(params.topk_group, 0, num_groups));  // the same groups kept
  p.top_k = int32_t(k);
  p.norm_topk_prob = params.norm_topk_prob;
  p.routed_scaling_factor = params.routed_scaling_factor;
  const Tensor d_logits = on_device(logits), d_bias = on_device(bias);
  if (replaying()) return true;
  check(kernels::launch_moe_route_f32(d_logits.data<float>(), d_bias.data<float>(), topk_ids.data<int32_t>(),
                                      topk_weights.data<float>(), n, p, stream()),
        "moe_route");
  return true;
}

namespace {

// An FP8 block weight of `rows` x `cols` on the GPU with its [ceil(rows/128), ceil(cols/128)] scale.
bool is_device_fp8_block(const Tensor& w, int64_t rows, int64_t cols) {
  if (!w.defined() || w.dtype() != DType::f8_e4m3 || w.device() != Device::cuda || w.dim() != 2 ||
      w.size(0) != rows || w.size(1) != cols || !w.has_block_scale())
    return false;
  const Tensor& s = w.block_scale();
  return s.dtype() == DType::f32 && s.device() == Device::cuda && s.numel() == ((rows + 127) / 128) * ((cols + 127) / 128);
}

// Which kernels run the experts' two products, chosen from the batch size and the shapes only
// (step graphs), with A/B switches read at each call (a benchmark times both in one process):
//   - f16: kernels/moe_f16_gemv (f16 tensor cores; up to 3..8 positions of an expert in one pass)
//     where it takes the sizes, up to kMoeF16MaxTokens tokens (R1 at 64: about 2 tokens an expert,
//     so the weights are read about once; at 256 about 8, read 3 times in units of 3 positions at
//     K 7,168, where the grouped kernels read them once for 32); TROUPE_MOE_F16_BATCH=0 keeps
//     batches of more than one token on the grouped kernels;
//   - rows: kernels/moe_rows_gemv (CUDA cores, one token an expert), for one-token batches whose
//     sizes f16 does not take, or with TROUPE_MOE_ONE_TOKEN_KERNEL=rows;
//   - grouped: kernels/moe_grouped_gemv's launchers; TROUPE_MOE_ROWS=0 keeps one-token batches there.
enum class ExpertKernels { f16, rows, grouped };
ExpertKernels expert_kernels(int64_t n, int64_t hidden, int64_t inter) {
  const bool f16 = kernels::moe_f16_supported(hidden, inter);
  if (n != 1)
    return f16 && n <= CudaBackend::kMoeF16MaxTokens && !env_is("TROUPE_MOE_F16_BATCH", "0") ? ExpertKernels::f16
                                                                             : ExpertKernels::grouped;
  if (!kernels::moe_rows_supported(hidden) || !kernels::moe_rows_supported(inter) || env_is("TROUPE_MOE_ROWS", "0"))
    return ExpertKernels::grouped;
  return f16 && !env_is("TROUPE_MOE_ONE_TOKEN_KERNEL", "rows") ? ExpertKernels::f16 : ExpertKernels::rows;
}

}  // namespace

const char* CudaBackend::moe_decode_experts_path(int64_t n, int64_t hidden, int64_t inter) {
  switch (expert_kernels(n, hidden, inter)) {
    case ExpertKernels::f16:
      return n == 1 ? "one-token f16 tensor-core kernels (kernels/moe_f16_gemv)"
                    : "f16 tensor-core kernels over units of an expert's positions (kernels/moe_f16_gemv)";
    case ExpertKernels::rows: return "one-token rows kernels (CUDA cores)";
    default: return "grouped FP8 GEMVs";
  }
}

namespace {

// Small batches group their slots in one CTA (kernels/moe_grouped_gemv.hpp's
// launch_moe_slots_one_block: two launches fewer than local ids, align and the active list);
// TROUPE_MOE_SLOTS_KERNEL=separate keeps the three launches (the A/B switch, read at each call).
bool slots_in_one_block(int64_t slots, int64_t table_size) {
  if (slots > kernels::kMoeSlotsOneBlockMax || table_size > kernels::kMoeGroupedMaxExperts) return false;
  const char* env = std::getenv("TROUPE_MOE_SLOTS_KERNEL");
  return !env || std::strcmp(env, "separate") != 0;
}

bool aligned16(const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw()) % 16 == 0; }

}  // namespace

Result<MoeExperts> CudaBackend::pack_moe_experts(const std::vector<Tensor>& gate_up, const std::vector<Tensor>& down,
                                                 const Tensor& shared_gate_up, const Tensor& shared_down) {
  const int64_t num_local = int64_t(gate_up.size());
  if (num_local < 1 || num_local >= kernels::kMoeGroupedMaxExperts || down.size() != gate_up.size() ||
      !gate_up[0].defined() || gate_up[0].dim() != 2 || !down[0].defined() || down[0].dim() != 2)
    return make_error(ErrorCode::unsupported, "grouped MoE experts: 1..511 experts with 2-D gate_up and down");
  const int64_t hidden = gate_up[0].size(1), inter = down[0].size(1);
  std::vector<Tensor> all_gate_up = gate_up, all_down = down;
  const bool has_shared = is_device_fp8_block(shared_gate_up, 2 * inter, hidden) &&
                          is_device_fp8_block(shared_down, hidden, inter);
  if (has_shared) {
    all_gate_up.push_back(shared_gate_up);
    all_down.push_back(shared_down);
  }
  const int64_t count = int64_t(all_gate_up.size());
  std::vector<uintptr_t> table(size_t(4 * count));  // gate_up w, gate_up scale, down w, down scale
  MoeExperts packed;
  for (int64_t e = 0; e < count; ++e) {
    const Tensor &gu = all_gate_up[size_t(e)], &dn = all_down[size_t(e)];
    if (!is_device_fp8_block(gu, 2 * inter, hidden) || !is_device_fp8_block(dn, hidden, inter))
      return make_error(ErrorCode::unsupported, "grouped MoE experts: expert " + std::to_string(e) +
                                                    " is not FP8 block weights of one shape on this GPU");
    // The kernels' 16-byte weight loads (rows of a multiple of 16 bytes) need 16-byte aligned bases.
    if (!aligned16(gu) || !aligned16(dn))
      return make_error(ErrorCode::unsupported, "grouped MoE experts: expert " + std::to_string(e) +
                                                    "'s weights are not 16-byte aligned");
    table[size_t(e)] = reinterpret_cast<uintptr_t>(gu.raw());
    table[size_t(count + e)] = reinterpret_cast<uintptr_t>(gu.block_scale().raw());
    table[size_t(2 * count + e)] = reinterpret_cast<uintptr_t>(dn.raw());
    table[size_t(3 * count + e)] = reinterpret_cast<uintptr_t>(dn.block_scale().raw());
    packed.weights.push_back(gu);
    packed.weights.push_back(dn);
  }
  try {
    packed.table = device_tensor(DType::u8, {int64_t(table.size() * sizeof(uintptr_t))});
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::out_of_resources, "grouped MoE experts: " + fault_);
  }
  if (cudaMemcpy(packed.table.raw(), table.data(), table.size() * sizeof(uintptr_t), cudaMemcpyHostToDevice) !=
      cudaSuccess)
    return make_error(ErrorCode::out_of_resources, "grouped MoE experts: uploading the pointer table failed");
  packed.num_local = num_local;
  packed.hidden = hidden;
  packed.intermediate = inter;
  packed.has_shared = has_shared;
  // moe_shared_ahead's stream, made now rather than under a step graph's recording; without it the
  // shared expert rides in the grouped launches.
  if (has_shared) ensure_side_stream();
  return packed;
}

bool CudaBackend::moe_experts(const Tensor& x, const Tensor& topk_ids, const Tensor& topk_weights,
                              const MoeExperts& experts, int64_t expert_begin, int64_t num_experts, Tensor out) {
  using namespace kernels;
  if (!experts.defined() || !x.defined() || x.dim() != 2 || !topk_ids.defined() || topk_ids.dim() != 2 ||
      topk_ids.dtype() != DType::i32 || topk_ids.device() != Device::cuda || !topk_weights.defined() ||
      topk_weights.dtype() != DType::f32 || topk_weights.device() != Device::cuda || !out.defined() ||
      out.dtype() != DType::f32)
    return false;
  const int64_t n = x.size(0), hidden = experts.hidden, inter = experts.intermediate, k = topk_ids.size(1);
  if (x.size(1) != hidden || topk_ids.size(0) != n || topk_weights.numel() != n * k ||
      out.numel() != n * hidden || (x.dtype() != DType::f32 && x.dtype() != DType::bf16) || num_experts < 1 ||
      expert_begin < 0 || expert_begin + experts.num_local > num_experts)
    return false;
  if (n > kMoeExpertsMaxTokens) return moe_experts_prefill(x, topk_ids, topk_weights, experts, expert_begin, out);
  const Tensor dx = on_device(x);
  // The shared expert went ahead on the side stream (moe_shared_ahead): left out of the launches
  // below, and joined before the combine, which then adds to its result.
  const bool ahead = shared_ahead_pending_ && experts.has_shared;
  if (replaying() || n == 0) {
    if (ahead) join_side_stream();
    return true;
  }
  // Local ids: the table's experts are 0..num_local-1, the shared one num_local (a slot k per token).
  // The pointer table keeps the shared expert's entries (packed_size) whether or not it runs here.
  const int64_t packed_size = experts.num_local + (experts.has_shared ? 1 : 0);
  const int64_t with_shared = experts.has_shared && !ahead ? 1 : 0, table_size = experts.num_local + with_shared;
  const int64_t slot_k = k + with_shared, slots = n * slot_k;
  const int64_t max_active = moe_max_active(table_size, slots);
  const int64_t x_stride = moe_perm_stride(hidden), act_stride = moe_perm_stride(inter);
  Tensor ids = scratch(DType::i32, {n, slot_k}), weights = scratch(DType::f32, {n, slot_k});
  Tensor counts = scratch(DType::i32, {table_size}), offsets = scratch(DType::i32, {table_size + 1});
  Tensor sorted = scratch(DType::i32, {slots}), slot_pos = scratch(DType::i32, {slots});
  Tensor num_active = scratch(DType::i32, {1}), active_expert = scratch(DType::i32, {max_active});
  Tensor active_begin = scratch(DType::i32, {max_active + 1});
  Tensor x_perm = scratch(DType::bf16, {slots, x_stride}), act = scratch(DType::bf16, {slots, act_stride});
  Tensor y_perm = scratch(DType::f32, {slots, hidden});
  if (slots_in_one_block(slots, table_size)) {  // local ids, grouping and active list: one launch
    check(launch_moe_slots_one_block(topk_ids.data<int32_t>(), topk_weights.data<float>(), n, int32_t(k),
                                     int32_t(expert_begin), int32_t(experts.num_local), with_shared != 0,
                                     ids.data<int32_t>(), weights.data<float>(), counts.data<int32_t>(),
                                     offsets.data<int32_t>(), sorted.data<int32_t>(), slot_pos.data<int32_t>(),
                                     num_active.data<int32_t>(), active_expert.data<int32_t>(),
                                     active_begin.data<int32_t>(), stream()),
          "moe_slots_one_block");
  } else {
    check(launch_moe_local_ids(topk_ids.data<int32_t>(), topk_weights.data<float>(), n, int32_t(k),
                               int32_t(expert_begin), int32_t(experts.num_local), with_shared != 0,
                               ids.data<int32_t>(), weights.data<float>(), stream()),
          "moe_local_ids");
    check(launch_moe_align(ids.data<int32_t>(), slots, int32_t(table_size), 1, counts.data<int32_t>(),
                           offsets.data<int32_t>(), sorted.data<int32_t>(), slots, slot_pos.data<int32_t>(), stream()),
          "moe_align");
    check(launch_moe_active_experts(ids.data<int32_t>(), slots, int32_t(table_size), counts.data<int32_t>(),
                                    offsets.data<int32_t>(), 0, int32_t(table_size), num_active.data<int32_t>(),
                                    active_expert.data<int32_t>(), active_begin.data<int32_t>(),
                                    slot_pos.data<int32_t>(), stream()),
          "moe_active_experts");
  }
  check(dx.dtype() == DType::bf16
            ? launch_moe_gather_scaled(dx.data<uint16_t>(), sorted.data<int32_t>(), int32_t(slot_k),
                                       x_perm.data<uint16_t>(), slots, hidden, x_stride, stream())
            : launch_moe_gather_scaled(dx.data<float>(), sorted.data<int32_t>(), int32_t(slot_k),
                                       x_perm.data<uint16_t>(), slots, hidden, x_stride, stream()),
        "moe_gather_scaled");
  const auto* table = static_cast<const uintptr_t*>(experts.table.raw());
  const auto* gu_w = reinterpret_cast<const uint8_t* const*>(table);
  const auto* gu_s = reinterpret_cast<const float* const*>(table + packed_size);
  const auto* dn_w = reinterpret_cast<const uint8_t* const*>(table + 2 * packed_size);
  const auto* dn_s = reinterpret_cast<const float* const*>(table + 3 * packed_size);
  const ExpertKernels path = expert_kernels(n, hidden, inter);
  if (path == ExpertKernels::f16) {
    check(launch_moe_f16_gate_up_silu(x_perm.data<uint16_t>(), x_stride, gu_w, gu_s, num_active.data<int32_t>(),
                                      active_expert.data<int32_t>(), active_begin.data<int32_t>(), max_active, slots, n,
                                      act.data<uint16_t>(), act_stride, inter, hidden, stream()),
          "moe_f16_gate_up_silu");
    check(launch_moe_f16_gemv(act.data<uint16_t>(), act_stride, dn_w, dn_s, num_active.data<int32_t>(),
                              active_expert.data<int32_t>(), active_begin.data<int32_t>(), max_active, slots, n,
                              y_perm.data<float>(), hidden, inter, stream()),
          "moe_f16_gemv");
  } else if (path == ExpertKernels::rows) {
    check(launch_moe_rows_gate_up_silu(x_perm.data<uint16_t>(), x_stride, gu_w, gu_s, num_active.data<int32_t>(),
                                       active_expert.data<int32_t>(), active_begin.data<int32_t>(), max_active,
                                       act.data<uint16_t>(), act_stride, inter, hidden, stream()),
          "moe_rows_gate_up_silu");
    check(launch_moe_rows_gemv(act.data<uint16_t>(), act_stride, dn_w, dn_s, num_active.data<int32_t>(),
                               active_expert.data<int32_t>(), active_begin.data<int32_t>(), max_active,
                               y_perm.data<float>(), hidden, inter, stream()),
          "moe_rows_gemv");
  } else {
    check(launch_moe_grouped_gate_up_silu(x_perm.data<uint16_t>(), x_stride, gu_w, gu_s, num_active.data<int32_t>(),
                                          active_expert.data<int32_t>(), active_begin.data<int32_t>(), max_active,
                                          act.data<uint16_t>(), act_stride, inter, hidden, n, stream()),
          "moe_grouped_gate_up_silu");
    check(launch_moe_grouped_gemv(act.data<uint16_t>(), act_stride, dn_w, dn_s, num_active.data<int32_t>(),
                                  active_expert.data<int32_t>(), active_begin.data<int32_t>(), max_active,
                                  y_perm.data<float>(), hidden, inter, n, stream()),
          "moe_grouped_gemv");
  }
  // With the shared expert in the table the combine writes out; else it adds to the shared result.
  // After a join the combine waits on both streams: a plain launch (kernels/plain_launches.hpp).
  if (ahead) join_side_stream();
  const PlainLaunches plain(ahead);
  check(launch_moe_combine_f32(y_perm.data<float>(), slot_pos.data<int32_t>(), weights.data<float>(),
                               with_shared ? nullptr : out.data<float>(), out.data<float>(), n, int32_t(slot_k), hidden,
                               stream()),
        "moe_combine");
  return true;
}

}  // namespace troupe::cuda
