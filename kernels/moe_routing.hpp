#pragma once
// DeepSeek-V3's MoE router on the device (noaux_tc: sigmoid scores, group-limited top-k), the same
// choice as models/moe.cpp route_tokens, per token t of logits [num_tokens, E]:
//   s_e      = 1 / (1 + exp(-logit_e))                  fp32
//   choice_e = s_e + bias_e                             used only to choose
//   group g's score = the sum of its two largest choice_e (its only one when a group has one expert);
//   the topk_group best groups are kept (ties: the lower group first), the other groups' experts
//   get choice -inf; the top_k experts by choice are taken (ties: the lower expert first, so among
//   -inf ones too); ids[t, i] is the i-th of them.
//   weights[t, i] = s_i / (s_0 + ... + s_{k-1}) (summed in that order) when norm_topk_prob, else
//   s_i; then * routed_scaling_factor.
// Three layers: the __global__ kernels (moe_routing.cu: up to 64 tokens one block per token, a
// thread per expert, group sums by scans and the top-k by each expert's rank; above that one warp
// per token, experts e = j * 32 + lane held in registers, warp shuffles for the group top-2 sums
// and the k argmax rounds), this raw-pointer launcher, and the CPU reference (moe_routing_ref.cpp,
// route_tokens' own steps).
// NOTE: the device's expf and glibc's expf may differ by an ulp, so two experts whose choice values
// are within an ulp or two of each other may order differently on the two sides (exact ties order
// the same: equal logits give equal scores on each side). Ids are bit-identical otherwise.
#include <cstdint>

#ifdef TROUPE_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace troupe::kernels {

// The router's settings (runtime's MoeRouteParams, models' MoeConfig, as plain numbers).
struct MoeRouteParams {
  int32_t num_experts = 0;   // E
  int32_t num_groups = 1;    // n_group (<= 0 reads as 1); E % num_groups == 0
  int32_t topk_group = 1;    // groups kept (at most num_groups count)
  int32_t top_k = 0;         // num_experts_per_tok, 1..E
  bool norm_topk_prob = true;
  float routed_scaling_factor = 1.0f;
};

// The device kernel's limits: E <= 512, num_groups <= 32, top_k <= 32.
constexpr int32_t kMoeRouteMaxExperts = 512;
constexpr int32_t kMoeRouteMaxGroups = 32;
constexpr int32_t kMoeRouteMaxTopK = 32;

// CPU reference. logits: [num_tokens, E]; bias: [E]; ids: [num_tokens, top_k] i32; weights:
// [num_tokens, top_k] fp32. Any E, groups and top_k with E % num_groups == 0 and 1 <= top_k <= E.
void moe_route_ref(const float* logits, const float* bias, int32_t* ids, float* weights, int64_t num_tokens,
                   const MoeRouteParams& params);

#ifdef TROUPE_HAVE_CUDA
// Device pointers, shapes as moe_route_ref. num_tokens == 0 does nothing. cudaErrorInvalidValue,
// nothing launched: num_tokens < 0 or > INT32_MAX, E outside 1..512, num_groups > 32 or not
// dividing E, top_k outside 1..min(E, 32).
cudaError_t launch_moe_route_f32(const float* logits, const float* bias, int32_t* ids, float* weights,
                                 int64_t num_tokens, const MoeRouteParams& params, cudaStream_t stream);
#endif

}  // namespace troupe::kernels
