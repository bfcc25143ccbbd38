#include "models/moe_dispatch.hpp"

namespace troupe {

TokenShare token_share(int64_t num_tokens, int64_t rank, int64_t size) {
  const int64_t first = num_tokens * rank / size, end = num_tokens * (rank + 1) / size;
  return TokenShare{first, end - first};
}

MoeDispatchPlan plan_moe_dispatch(const MoeRouting& routing, int64_t first_token, int64_t num_tokens, int64_t k,
                                  int64_t num_experts, int64_t size) {
  MoeDispatchPlan plan;
  plan.send_rows.assign(size_t(size), 0);
  const int64_t per_rank = num_experts / size;
  for (int64_t d = 0; d < size; ++d) {
    for (int64_t t = 0; t < num_tokens; ++t) {
      bool any = false;
      for (int64_t j = 0; j < k; ++j) any = any || routing.experts[size_t(t * k + j)] / per_rank == d;
      if (!any) continue;
      plan.token_of_row.push_back(int32_t(first_token + t));
      for (int64_t j = 0; j < k; ++j) {
        const int32_t e = routing.experts[size_t(t * k + j)];
        const bool here = e / per_rank == d;
        plan.pairs.push_back(here ? float(e) : -1.0f);
        plan.pairs.push_back(here ? routing.weights[size_t(t * k + j)] : 0.0f);
      }
      ++plan.send_rows[size_t(d)];
    }
  }
  return plan;
}

MoeRouting routing_of_pairs(const float* pairs, int64_t rows, int64_t k) {
  MoeRouting routing;
  routing.experts.reserve(size_t(rows * k));
  routing.weights.reserve(size_t(rows * k));
  for (int64_t i = 0; i < rows * k; ++i) {
    routing.experts.push_back(int32_t(pairs[2 * i]));
    routing.weights.push_back(pairs[2 * i + 1]);
  }
  return routing;
}

}  // namespace troupe
