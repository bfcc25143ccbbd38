#pragma once
// The MoE router's settings as Backend::moe_route takes them: DeepSeek-V3's noaux_tc (sigmoid
// scores, + a correction bias to choose, group-limited top-k), the numbers of MoeConfig
// (runtime/model_config.hpp) without its strings, so a backend needs nothing from models/.
#include <cstdint>

#include "runtime/model_config.hpp"

namespace troupe {

struct MoeRouteParams {
  int64_t num_experts = 0;  // n_routed_experts
  int64_t num_groups = 1;   // n_group
  int64_t topk_group = 1;
  int64_t top_k = 0;        // num_experts_per_tok
  bool norm_topk_prob = true;
  float routed_scaling_factor = 1.0f;  // applied in fp32, as route_tokens does

  static MoeRouteParams from(const MoeConfig& moe) {
    return {moe.n_routed_experts, moe.n_group,           moe.topk_group,
            moe.num_experts_per_tok, moe.norm_topk_prob, float(moe.routed_scaling_factor)};
  }
};

}  // namespace troupe
