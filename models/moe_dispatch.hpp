#pragma once
// Expert parallel with token dispatch (--all2all-backend all_to_all), the host-side plan.
//
// Under tensor parallel every rank holds every token's hidden state; rank r takes the tokens
// [n r / N, n (r + 1) / N) as its own, routes them, and sends each to the ranks that hold its
// chosen experts: one row per (token, rank) pair, however many of the token's experts that rank
// holds (DeepEP's dispatch sends a token once per rank, too). Next to the hidden state travel the
// token's k (expert, weight) pairs on that rank (the others -1, 0). The receiving rank runs its
// experts on the rows, sums w * expert(x) per row, and sends the sums back in the order they came
// (the combine); the owner adds each into its token's row of the MoE output.
//
// Rows go rank by rank (the order Collective::all_to_all sends them), tokens in order within a
// rank. A rank's MoE output then holds its shared-expert slice for every token plus the routed
// sums of its own tokens, and the all-reduce after the MLP completes it as in the all-reduce mode.
#include <cstdint>
#include <vector>

#include "models/moe.hpp"

namespace troupe {

// The tokens [first, end) of a batch of n over `size` ranks: rank `rank`'s own.
struct TokenShare {
  int64_t first = 0;
  int64_t count = 0;
};
TokenShare token_share(int64_t num_tokens, int64_t rank, int64_t size);

struct MoeDispatchPlan {
  std::vector<int64_t> send_rows;     // [size]: rows for each rank
  std::vector<int32_t> token_of_row;  // [rows]: the batch row (token) each sent row carries
  std::vector<float> pairs;           // [rows, 2 k]: (global expert id or -1, weight) x k
};

// routing: the k experts and weights of `num_tokens` tokens, the first of which is batch row
// `first_token`; the experts split evenly over `size` ranks (rank d holds
// [d E / size, (d + 1) E / size)).
MoeDispatchPlan plan_moe_dispatch(const MoeRouting& routing, int64_t first_token, int64_t num_tokens, int64_t k,
                                  int64_t num_experts, int64_t size);

// The (expert, weight) pairs of `rows` received rows ([rows, 2 k], as plan_moe_dispatch writes
// them) as a routing: the -1 experts match no expert.
MoeRouting routing_of_pairs(const float* pairs, int64_t rows, int64_t k);

}  // namespace troupe
