// The MoE router kernels (moe_routing.hpp): one block per token at decode sizes, one warp per token above.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda_common.cuh"
#include "kernels/dependent_launch.cuh"
#include "kernels/moe_routing.hpp"

namespace troupe::kernels {
namespace {

constexpr int kRouteWarps = 4;  // tokens per block
constexpr unsigned kFull = 0xffffffffu;

// The top two values of a multiset, (first, second), merged across lanes.
__device__ __forceinline__ void top2_insert(float v, float& first, float& second) {
  if (v > first) {
    second = first;
    first = v;
  } else if (v > second) {
    second = v;
  }
}

// kPerLane: experts per lane (E <= 32 * kPerLane); lane `lane` holds experts j * 32 + lane.
template <int kPerLane>
__global__ void __launch_bounds__(kRouteWarps * 32)
    moe_route_kernel(const float* logits, const float* bias, int32_t* ids, float* weights, int64_t num_tokens,
                     MoeRouteParams p) {
  __shared__ float group_score[kRouteWarps][kMoeRouteMaxGroups];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t t = int64_t(blockIdx.x) * kRouteWarps + warp;
  if (t >= num_tokens) return;  // the whole warp
  const int num_experts = p.num_experts;
  const int num_groups = p.num_groups > 1 ? p.num_groups : 1, per_group = num_experts / num_groups;
  const float* row = logits + t * num_experts;

  float s[kPerLane], choice[kPerLane];
  int group[kPerLane];  // of expert j * 32 + lane
  uint32_t taken = 0;  // bit j: expert j * 32 + lane is out of range or already chosen
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int e = j * 32 + lane;
    group[j] = e / per_group;
    if (e < num_experts) {
      s[j] = 1.0f / (1.0f + expf(-row[e]));
      choice[j] = s[j] + bias[e];
    } else {
      s[j] = 0.0f;
      choice[j] = -INFINITY;
      taken |= 1u << j;
    }
  }

  // Groups: the sum of each group's top two, then keep the topk_group best (lower group on ties).
  uint32_t kept = p.topk_group >= 1 ? 1u : 0u;  // one group: kept unless topk_group < 1
  if (num_groups > 1) {
    for (int g = 0; g < num_groups; ++g) {
      float first = -INFINITY, second = -INFINITY;
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        if (!((taken >> j) & 1u) && group[j] == g) top2_insert(choice[j], first, second);
      }
      for (int o = 16; o > 0; o /= 2) {
        const float other_first = __shfl_xor_sync(kFull, first, o), other_second = __shfl_xor_sync(kFull, second, o);
        if (first >= other_first) {
          second = fmaxf(second, other_first);
        } else {
          second = fmaxf(first, other_second);
          first = other_first;
        }
      }
      if (lane == 0) group_score[warp][g] = first + (per_group > 1 ? second : 0.0f);
    }
    __syncwarp();
    bool keep = false;
    if (lane < num_groups) {
      const float mine = group_score[warp][lane];
      int rank = 0;  // the group's place in a stable sort by descending score
      for (int h = 0; h < num_groups; ++h) {
        const float other = group_score[warp][h];
        rank += other > mine || (other == mine && h < lane);
      }
      keep = rank < p.topk_group;
    }
    kept = __ballot_sync(kFull, keep);
  }
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    if (!((taken >> j) & 1u) && !((kept >> group[j]) & 1u)) choice[j] = -INFINITY;
  }

  // top_k rounds of a warp argmax over the experts not yet taken (the lower expert on ties).
  int32_t my_id = 0;  // lane i keeps round i's expert and its score
  float my_s = 0.0f;
  for (int i = 0; i < p.top_k; ++i) {
    float best = 0.0f, best_s = 0.0f;
    int best_e = -1;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      if (!((taken >> j) & 1u) && (best_e < 0 || choice[j] > best)) {
        best = choice[j];
        best_s = s[j];
        best_e = j * 32 + lane;
      }
    }
    for (int o = 16; o > 0; o /= 2) {
      const float other = __shfl_xor_sync(kFull, best, o), other_s = __shfl_xor_sync(kFull, best_s, o);
      const int other_e = __shfl_xor_sync(kFull, best_e, o);
      if (other_e >= 0 && (best_e < 0 || other > best || (other == best && other_e < best_e))) {
        best = other;
        best_s = other_s;
        best_e = other_e;
      }
    }
    if (lane == i) {
      my_id = best_e;
      my_s = best_s;
    }
    if ((best_e & 31) == lane) taken |= 1u << (best_e >> 5);
  }

  float sum = 0.0f;  // in order, as the reference sums
  for (int i = 0; i < p.top_k; ++i) sum += __shfl_sync(kFull, my_s, i);
  if (lane < p.top_k) {
    float w = my_s;
    if (p.norm_topk_prob) w = __fdiv_rn(w, sum);
    ids[t * p.top_k + lane] = my_id;
    weights[t * p.top_k + lane] = __fmul_rn(w, p.routed_scaling_factor);
  }
}

// Decode sizes: one block per token, thread e holding expert e (blockDim.x = E rounded up to a
// warp). The warp kernel above chains about 80 dependent shuffle rounds through one warp (the
// group top-2 sums, then k argmax rounds); here the group sums are a short scan per group thread
// and the top-k is each expert's rank among all (choice descending, the lower expert first on
// ties): the same choice, ids and weights (NaN choices rank as -inf, so ranks 0..k-1 always exist).
__global__ void __launch_bounds__(kMoeRouteMaxExperts)
    moe_route_block_kernel(const float* logits, const float* bias, int32_t* ids, float* weights, MoeRouteParams p) {
  __shared__ __align__(16) float choice_s[kMoeRouteMaxExperts];
  __shared__ float group_s[kMoeRouteMaxGroups];
  __shared__ float chosen_s[kMoeRouteMaxTopK];
  __shared__ int32_t chosen_id[kMoeRouteMaxTopK];
  __shared__ uint32_t kept_s;
  const int64_t t = blockIdx.x;
  const int e = threadIdx.x, num_experts = p.num_experts;
  const int num_groups = p.num_groups > 1 ? p.num_groups : 1, per_group = num_experts / num_groups;
  const bool valid = e < num_experts;
  // A programmatic dependent of the router's linear: the bias (a weight) before the wait, the
  // logits after it.
  allow_dependents();
  const float b = valid ? bias[e] : 0.0f;
  wait_for_prerequisites();
  float s = 0.0f, choice = -INFINITY;
  if (valid) {
    s = 1.0f / (1.0f + expf(-logits[t * num_experts + e]));
    choice = s + b;
    if (choice != choice) choice = -INFINITY;
  }
  choice_s[e] = choice;
  __syncthreads();
  if (e < 32) {  // groups: the sum of each one's top two, the topk_group best kept (lower group on ties)
    uint32_t kept = p.topk_group >= 1 ? 1u : 0u;
    if (num_groups > 1) {
      if (e < num_groups) {
        float first = -INFINITY, second = -INFINITY;
        for (int i = e * per_group; i < (e + 1) * per_group; ++i) top2_insert(choice_s[i], first, second);
        group_s[e] = first + (per_group > 1 ? second : 0.0f);
      }
      __syncwarp();
      bool keep = false;
      if (e < num_groups) {
        const float mine = group_s[e];
        int rank = 0;
        for (int h = 0; h < num_groups; ++h) {
          const float other = group_s[h];
          rank += other > mine || (other == mine && h < e);
        }
        keep = rank < p.topk_group;
      }
      kept = __ballot_sync(kFull, keep);
    }
    if (e == 0) kept_s = kept;
  }
  __syncthreads();
  if (valid && !((kept_s >> (e / per_group)) & 1u)) choice = -INFINITY;
  __syncthreads();  // every group sum has read choice_s
  choice_s[e] = choice;
  __syncthreads();
  if (valid) {
    int rank = 0;
    const float4* all = reinterpret_cast<const float4*>(choice_s);
    for (int i = 0; i < num_experts / 4; ++i) {
      const float4 c = all[i];
      const int base = 4 * i;
      rank += (c.x > choice || (c.x == choice && base < e)) + (c.y > choice || (c.y == choice && base + 1 < e)) +
              (c.z > choice || (c.z == choice && base + 2 < e)) + (c.w > choice || (c.w == choice && base + 3 < e));
    }
    for (int i = num_experts & ~3; i < num_experts; ++i) {
      const float c = choice_s[i];
      rank += c > choice || (c == choice && i < e);
    }
    if (rank < p.top_k) {
      chosen_s[rank] = s;
      chosen_id[rank] = e;
    }
  }
  __syncthreads();
  if (e < p.top_k) {
    float sum = 0.0f;  // in order, as the reference sums
    for (int i = 0; i < p.top_k; ++i) sum += chosen_s[i];
    float w = chosen_s[e];
    if (p.norm_topk_prob) w = __fdiv_rn(w, sum);
    ids[t * p.top_k + e] = chosen_id[e];
    weights[t * p.top_k + e] = __fmul_rn(w, p.routed_scaling_factor);
  }
}

// Tokens up to which moe_route_block_kernel runs (decode steps); the warp kernel, with 4 tokens a
// block, above. TROUPE_MOE_ROUTE_KERNEL=warp keeps the warp kernel at every size (A/B runs).
constexpr int64_t kBlockKernelMaxTokens = 64;

bool block_kernel_wanted(int64_t num_tokens) {
  static const bool warp_only = [] {
    const char* env = std::getenv("TROUPE_MOE_ROUTE_KERNEL");
    return env != nullptr && std::strcmp(env, "warp") == 0;
  }();
  return !warp_only && num_tokens <= kBlockKernelMaxTokens;
}

template <int kPerLane>
cudaError_t launch(const float* logits, const float* bias, int32_t* ids, float* weights, int64_t num_tokens,
                   const MoeRouteParams& p, cudaStream_t stream) {
  const unsigned blocks = unsigned((num_tokens + kRouteWarps - 1) / kRouteWarps);
  moe_route_kernel<kPerLane><<<blocks, kRouteWarps * 32, 0, stream>>>(logits, bias, ids, weights, num_tokens, p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_moe_route_f32(const float* logits, const float* bias, int32_t* ids, float* weights,
                                 int64_t num_tokens, const MoeRouteParams& params, cudaStream_t stream) {
  const int32_t num_experts = params.num_experts, num_groups = params.num_groups > 1 ? params.num_groups : 1;
  if (bad_rows(num_tokens) || num_experts < 1 || num_experts > kMoeRouteMaxExperts ||
      num_groups > kMoeRouteMaxGroups || num_experts % num_groups != 0 || params.top_k < 1 ||
      params.top_k > num_experts || params.top_k > kMoeRouteMaxTopK)
    return cudaErrorInvalidValue;
  if (num_tokens == 0) return cudaSuccess;
  if (block_kernel_wanted(num_tokens)) {
    const unsigned threads = unsigned((num_experts + 31) / 32 * 32);
    return launch_dependent(moe_route_block_kernel, dim3(unsigned(num_tokens)), dim3(threads), 0, stream, logits, bias,
                            ids, weights, params);
  }
  if (num_experts <= 32) return launch<1>(logits, bias, ids, weights, num_tokens, params, stream);
  if (num_experts <= 64) return launch<2>(logits, bias, ids, weights, num_tokens, params, stream);
  if (num_experts <= 128) return launch<4>(logits, bias, ids, weights, num_tokens, params, stream);
  if (num_experts <= 256) return launch<8>(logits, bias, ids, weights, num_tokens, params, stream);
  return launch<16>(logits, bias, ids, weights, num_tokens, params, stream);
}

}  // namespace troupe::kernels
