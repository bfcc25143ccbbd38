#pragma once
// DeepSeek-V3's routed mixture of experts (noaux_tc, sigmoid scores, group-limited top-k).
//
//   s  = sigmoid(x @ gate^T)            fp32 router logits, [n, E]
//   s' = s + e_score_correction_bias    used only to choose experts
//   group score = sum of its top-2 s'; keep the topk_group best groups; experts of the other groups
//   are masked with -inf (DeepSeek's reference; transformers masks with 0, the same whenever the
//   kept scores are positive); take the num_experts_per_tok best experts by s'.
//   w_i = s_i (not s'), / sum(w) when norm_topk_prob, * routed_scaling_factor
//   out = sum_i w_i * expert_i(x) + shared_experts(x)
// The router runs on the device when the backend has Backend::moe_route (CUDA: kernels/moe_routing,
// the same ids as route_tokens). Where the backend also packed the experts at load
// (MoeExpertsBackend::pack_moe_experts, runtime/moe_experts.hpp: CUDA with FP8 experts) and takes
// the batch (moe_experts: CUDA takes any batch outside a graph recording; decode-sized ones with no
// host sync, prefill-sized ones with one, for the experts' row counts), the experts and the combine
// run there too. Otherwise the [n, k] ids and weights come to the host (or the logits, and
// route_tokens, the reference, chooses) and the experts run one by one on the host-built row lists
// (the CPU backend, experts the backend could not pack).
// The CPU backend is the reference; the model refuses other backends until their MLA/MoE ops land.
// Tensor parallel (MoeConfig::expert_parallel_*): every rank routes all tokens over all experts,
// runs only its local experts (loaded whole) on the tokens routed to them and its slice of the
// shared experts; `out` is then this rank's partial sum, completed by the all-reduce after the MLP.
// With MoeConfig::dispatch_tokens (forward_dispatched, models/moe_dispatch.hpp) each rank routes
// only its share of the tokens and sends them to the ranks of their experts instead.
#include <memory>
#include <string>
#include <vector>

#include "models/mlp.hpp"
#include "runtime/collective.hpp"
#include "runtime/moe_experts.hpp"

namespace troupe {

// The experts chosen per token: experts[t * k + i] and their weights, k = num_experts_per_tok.
struct MoeRouting {
  std::vector<int32_t> experts;
  std::vector<float> weights;
};

// logits: [num_tokens, n_routed_experts] row-major; bias: [n_routed_experts].
MoeRouting route_tokens(const float* logits, int64_t num_tokens, const std::vector<float>& bias,
                        const MoeConfig& moe);

class MoeMlp final : public MlpLayer {
 public:
  // prefix: "model.layers.N.mlp."
  static Result<std::unique_ptr<MoeMlp>> load(const ModelConfig& config, const std::string& prefix,
                                              const WeightLoader& weights, Backend& backend);
  void forward(const Tensor& x, Tensor out) override;
  // Expert parallel with token dispatch: routes this rank's share of x's tokens, sends each to the
  // ranks of its experts, runs the local experts on the rows that came, sends the sums back. `out`
  // (every token) is then this rank's shared-expert slice plus its own tokens' routed sums, for the
  // all-reduce after the MLP. Every rank of `collective` must call it with the same x rows.
  Status forward_dispatched(const Tensor& x, Tensor out, Collective& collective);

 private:
  explicit MoeMlp(Backend& backend) : backend_(backend) {}
  // out = the shared experts' result (zeros when none).
  void run_shared(const Tensor& x, Tensor out);
  // The routing of x's tokens on the host (the device router's choice when the backend has one).
  MoeRouting route_on_host(const Tensor& x);
  // The router's choice on the host: the device's ids and weights when given (moe_route ran),
  // else route_tokens over the logits.
  MoeRouting host_routing(const Tensor& logits, const Tensor* ids, const Tensor* weights);
  // The host loop: each local expert on the rows routed to it, added into out.
  void run_experts_on_host(const Tensor& x, const MoeRouting& routing, Tensor out);

  Backend& backend_;
  MoeConfig moe_;
  Tensor gate_weight_;              // [E, hidden]
  std::vector<float> bias_;         // [E], host
  // bias_ as a weight of the backend (fp32 [E]), uploaded once: the router reads it where it runs
  // (a host tensor would be copied up at every call, a copy node in every decode step's graph).
  Tensor bias_weight_;
  std::vector<std::unique_ptr<LlamaMlp>> experts_;  // the local ones: [local_expert_begin, local_expert_end)
  std::unique_ptr<LlamaMlp> shared_;  // intermediate moe_.shared_intermediate_size(); null if none
  MoeExpertsBackend* grouped_ = nullptr;  // backend_'s grouped experts, when it has them
  MoeExperts packed_;                     // the local experts packed for it; undefined: none
};

}  // namespace troupe
