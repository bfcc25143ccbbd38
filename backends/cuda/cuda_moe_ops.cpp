// CudaBackend's MoE ops over kernels/moe_*.hpp (the device router; the grouping, gather and
// combine follow with the grouped expert GEMM).
#include <cuda_runtime_api.h>

#include <algorithm>

#include "backends/cuda/cuda_backend.hpp"
#include "kernels/moe_routing.hpp"

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

}  // namespace troupe::cuda
