// The MoE router's CPU reference (moe_routing.hpp): route_tokens' steps (models/moe.cpp), on raw
// pointers. NOTE: keep the two in step; tests/unit/moe_kernel_refs_test.cpp checks they agree.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <vector>

#include "kernels/moe_routing.hpp"

namespace troupe::kernels {

void moe_route_ref(const float* logits, const float* bias, int32_t* ids, float* weights, int64_t num_tokens,
                   const MoeRouteParams& params) {
  const int64_t num_experts = params.num_experts, k = params.top_k;
  const int64_t num_groups = std::max<int64_t>(1, params.num_groups), per_group = num_experts / num_groups;
  const size_t n_experts = static_cast<size_t>(num_experts), n_groups = static_cast<size_t>(num_groups);
  std::vector<float> s(n_experts), choice(n_experts), members(static_cast<size_t>(per_group));
  std::vector<float> group_score(n_groups);
  std::vector<int32_t> order(std::max(n_experts, n_groups));
  std::vector<bool> kept(n_groups);
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t e = 0; e < num_experts; ++e) {
      s[size_t(e)] = 1.0f / (1.0f + std::exp(-logits[t * num_experts + e]));
      choice[size_t(e)] = s[size_t(e)] + bias[e];
    }
    for (int64_t g = 0; g < num_groups; ++g) {
      std::copy(choice.begin() + g * per_group, choice.begin() + (g + 1) * per_group, members.begin());
      std::partial_sort(members.begin(), members.begin() + std::min<int64_t>(2, per_group), members.end(),
                        std::greater<float>());
      group_score[size_t(g)] = members[0] + (per_group > 1 ? members[1] : 0.0f);
    }
    std::iota(order.begin(), order.begin() + num_groups, 0);
    std::stable_sort(order.begin(), order.begin() + num_groups,
                     [&](int32_t a, int32_t b) { return group_score[size_t(a)] > group_score[size_t(b)]; });
    std::fill(kept.begin(), kept.end(), false);
    for (int64_t i = 0; i < std::min<int64_t>(params.topk_group, num_groups); ++i) kept[size_t(order[size_t(i)])] = true;
    for (int64_t e = 0; e < num_experts; ++e)
      if (!kept[size_t(e / per_group)]) choice[size_t(e)] = -std::numeric_limits<float>::infinity();
    std::iota(order.begin(), order.begin() + num_experts, 0);
    std::stable_sort(order.begin(), order.begin() + num_experts,
                     [&](int32_t a, int32_t b) { return choice[size_t(a)] > choice[size_t(b)]; });
    float sum = 0.0f;
    for (int64_t i = 0; i < k; ++i) sum += s[size_t(order[size_t(i)])];
    for (int64_t i = 0; i < k; ++i) {
      const int32_t e = order[size_t(i)];
      float w = s[size_t(e)];
      if (params.norm_topk_prob) w /= sum;
      ids[t * k + i] = e;
      weights[t * k + i] = w * params.routed_scaling_factor;
    }
  }
}

}  // namespace troupe::kernels
