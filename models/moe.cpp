#include "models/moe.hpp"

#include <cstdlib>
#include <string>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "models/attention.hpp"
#include "models/moe_dispatch.hpp"

namespace troupe {

MoeRouting route_tokens(const float* logits, int64_t num_tokens, const std::vector<float>& bias,
                        const MoeConfig& moe) {
  const int64_t num_experts = moe.n_routed_experts, k = moe.num_experts_per_tok;
  const int64_t num_groups = std::max<int64_t>(1, moe.n_group), per_group = num_experts / num_groups;
  MoeRouting routing;
  routing.experts.reserve(size_t(num_tokens * k));
  routing.weights.reserve(size_t(num_tokens * k));
  std::vector<float> s(static_cast<size_t>(num_experts)), choice(static_cast<size_t>(num_experts));
  std::vector<float> group_score(static_cast<size_t>(num_groups));
  std::vector<int32_t> order(static_cast<size_t>(std::max(num_experts, num_groups)));
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int64_t e = 0; e < num_experts; ++e) {
      s[size_t(e)] = 1.0f / (1.0f + std::exp(-logits[t * num_experts + e]));
      choice[size_t(e)] = s[size_t(e)] + bias[size_t(e)];
    }
    for (int64_t g = 0; g < num_groups; ++g) {
      // The sum of the group's top 2 (its only one when a group has one expert).
      std::vector<float> members(choice.begin() + g * per_group, choice.begin() + (g + 1) * per_group);
      std::partial_sort(members.begin(), members.begin() + std::min<int64_t>(2, per_group), members.end(),
                        std::greater<float>());
      group_score[size_t(g)] = members[0] + (per_group > 1 ? members[1] : 0.0f);
    }
    std::iota(order.begin(), order.begin() + num_groups, 0);
    std::stable_sort(order.begin(), order.begin() + num_groups,
                     [&](int32_t a, int32_t b) { return group_score[size_t(a)] > group_score[size_t(b)]; });
    std::vector<bool> kept(static_cast<size_t>(num_groups), false);
    for (int64_t i = 0; i < std::min(moe.topk_group, num_groups); ++i) kept[size_t(order[size_t(i)])] = true;
    for (int64_t e = 0; e < num_experts; ++e) {
      if (!kept[size_t(e / per_group)]) choice[size_t(e)] = -std::numeric_limits<float>::infinity();
    }
    std::iota(order.begin(), order.begin() + num_experts, 0);
    std::stable_sort(order.begin(), order.begin() + num_experts,
                     [&](int32_t a, int32_t b) { return choice[size_t(a)] > choice[size_t(b)]; });
    float sum = 0.0f;
    for (int64_t i = 0; i < k; ++i) sum += s[size_t(order[size_t(i)])];
    for (int64_t i = 0; i < k; ++i) {
      const int32_t e = order[size_t(i)];
      float w = s[size_t(e)];
      if (moe.norm_topk_prob) w /= sum;
      routing.experts.push_back(e);
      routing.weights.push_back(w * float(moe.routed_scaling_factor));
    }
  }
  return routing;
}

Result<std::unique_ptr<MoeMlp>> MoeMlp::load(const ModelConfig& config, const std::string& prefix,
                                             const WeightLoader& weights, Backend& backend) {
  std::unique_ptr<MoeMlp> layer(new MoeMlp(backend));
  const MoeConfig& moe = config.moe;
  layer->moe_ = moe;
  const int64_t hidden = config.hidden_size;
  if (moe.n_group <= 0 || moe.n_routed_experts % moe.n_group != 0 || moe.num_experts_per_tok <= 0 ||
      moe.num_experts_per_tok > moe.n_routed_experts || moe.topk_group > moe.n_group)
    return make_error(ErrorCode::unsupported, prefix + ": n_routed_experts must split into n_group groups, with "
                                                       "num_experts_per_tok <= n_routed_experts and topk_group <= n_group");
  if (moe.expert_parallel_size < 1 || moe.expert_parallel_rank < 0 ||
      moe.expert_parallel_rank >= moe.expert_parallel_size || moe.n_routed_experts % moe.expert_parallel_size != 0)
    return make_error(ErrorCode::invalid_argument, prefix + ": expert-parallel rank " +
                                                       std::to_string(moe.expert_parallel_rank) + " of " +
                                                       std::to_string(moe.expert_parallel_size) +
                                                       " does not split n_routed_experts evenly");
  if (moe.topk_method != "noaux_tc" || moe.scoring_func != "sigmoid")
    return make_error(ErrorCode::unsupported, prefix + ": only topk_method noaux_tc with sigmoid scores is supported");
  auto gate = load_weight(weights, backend, prefix + "gate.weight", {moe.n_routed_experts, hidden});
  if (!gate.ok()) return gate.error();
  layer->gate_weight_ = std::move(gate.value());
  auto bias = weights(prefix + "gate.e_score_correction_bias", {moe.n_routed_experts});
  if (!bias.ok()) return bias.error();
  layer->bias_.resize(size_t(moe.n_routed_experts));
  if (!convert_to_f32(bias->dtype(), bias->raw(), layer->bias_.size(), layer->bias_.data()))
    return make_error(ErrorCode::unsupported, prefix + "gate.e_score_correction_bias: not a float tensor");
  auto bias_weight = backend.upload_weight(Tensor::from_f32(layer->bias_, {moe.n_routed_experts}));
  if (!bias_weight.ok()) return bias_weight.error();
  layer->bias_weight_ = std::move(bias_weight.value());
  ModelConfig expert_config = config;
  expert_config.mlp_bias = false;
  expert_config.intermediate_size = moe.moe_intermediate_size;
  for (int64_t e = moe.local_expert_begin(); e < moe.local_expert_end(); ++e) {
    auto expert = LlamaMlp::load(expert_config, prefix + "experts." + std::to_string(e) + ".", weights, backend);
    if (!expert.ok()) return expert.error();
    layer->experts_.push_back(std::move(expert.value()));
  }
  if (moe.n_shared_experts > 0) {
    expert_config.intermediate_size = moe.shared_intermediate_size();
    auto shared = LlamaMlp::load(expert_config, prefix + "shared_experts.", weights, backend);
    if (!shared.ok()) return shared.error();
    layer->shared_ = std::move(shared.value());
  }
  // TROUPE_MOE_GROUPED=0 keeps the per-expert loop where the grouped path would run: a diagnostic,
  // for comparing the two paths' answers and speed (bench/dsv3_moe_bench, dsv3_model_bench).
  const char* grouped_env = std::getenv("TROUPE_MOE_GROUPED");
  if (!grouped_env || std::string(grouped_env) != "0") layer->grouped_ = dynamic_cast<MoeExpertsBackend*>(&backend);
  if (layer->grouped_ && backend.keeps_fp8_weights() && !layer->experts_.empty()) {
    std::vector<Tensor> gate_up, down;
    for (const auto& expert : layer->experts_) {
      gate_up.push_back(expert->gate_up_weight());
      down.push_back(expert->down_weight());
    }
    // Dispatching tokens, the experts run on rows from other ranks: the shared expert stays out.
    const bool with_shared = layer->shared_ && !moe.dispatch_tokens;
    const Tensor shared_gate_up = with_shared ? layer->shared_->gate_up_weight() : Tensor();
    const Tensor shared_down = with_shared ? layer->shared_->down_weight() : Tensor();
    auto packed = layer->grouped_->pack_moe_experts(gate_up, down, shared_gate_up, shared_down);
    if (packed.ok()) layer->packed_ = std::move(packed.value());  // else: the host loop
  }
  return layer;
}

void MoeMlp::run_shared(const Tensor& x, Tensor out) {
  if (shared_) {
    shared_->forward(x, out);
  } else {
    Tensor zeros = Tensor::zeros(DType::f32, {x.size(0), x.size(1)});
    backend_.copy(zeros, out);
  }
}

void MoeMlp::forward(const Tensor& x, Tensor out) {
  const int64_t n = x.size(0), num_experts = moe_.n_routed_experts;
  const int64_t k = moe_.num_experts_per_tok;
  if (n == 0) return run_shared(x, out);
  // The packed shared expert may start first, beside the router and the routing
  // (MoeExpertsBackend::moe_shared_ahead); out then holds its result once joined.
  const bool shared_ahead = packed_.has_shared && grouped_->moe_shared_ahead(x, packed_, out);
  // Joined on every way out, an exception's included (a no-op once moe_experts or shared_first
  // has joined).
  struct JoinOnExit {
    MoeExpertsBackend* grouped;
    bool ahead;
    ~JoinOnExit() {
      if (ahead) grouped->moe_shared_join();
    }
  } join_on_exit{grouped_, shared_ahead};
  // Riding in the grouped launches instead, the shared expert's gate_up (first of its packed pair)
  // may move into L2 beside the router and the routing, which stream little.
  const size_t shared_gate_up = size_t(2 * packed_.num_local);
  if (!shared_ahead && packed_.has_shared && n <= Backend::kPrefetchMaxTokens && shared_gate_up < packed_.weights.size())
    backend_.prefetch_weight(packed_.weights[shared_gate_up]);
  Tensor logits = backend_.empty(DType::f32, {n, num_experts});
  backend_.linear(x, gate_weight_, Tensor(), logits);
  Tensor ids = backend_.empty(DType::i32, {n, k}), weights = backend_.empty(DType::f32, {n, k});
  // The shared expert's result in out before the host loop adds to it.
  auto shared_first = [&] {
    if (shared_ahead)
      grouped_->moe_shared_join();
    else
      run_shared(x, out);
  };
  if (backend_.moe_route(logits, bias_weight_, MoeRouteParams::from(moe_), ids, weights)) {
    // With the shared expert packed, moe_experts writes out = shared + routed (adds to it when
    // the shared expert went ahead); else it adds.
    if (!packed_.has_shared) run_shared(x, out);
    if (packed_.defined() &&
        grouped_->moe_experts(x, ids, weights, packed_, moe_.local_expert_begin(), num_experts, out))
      return;
    if (packed_.has_shared) shared_first();
    run_experts_on_host(x, host_routing(logits, &ids, &weights), out);
    return;
  }
  shared_first();
  run_experts_on_host(x, host_routing(logits, nullptr, nullptr), out);
}

MoeRouting MoeMlp::host_routing(const Tensor& logits, const Tensor* ids, const Tensor* weights) {
  const int64_t n = logits.size(0), k = moe_.num_experts_per_tok;
  if (ids == nullptr) {
    const Tensor host_logits = backend_.to_host(logits);
    return route_tokens(host_logits.data<float>(), n, bias_, moe_);
  }
  const Tensor host_ids = backend_.to_host(*ids), host_weights = backend_.to_host(*weights);
  return MoeRouting{std::vector<int32_t>(host_ids.data<int32_t>(), host_ids.data<int32_t>() + n * k),
                    std::vector<float>(host_weights.data<float>(), host_weights.data<float>() + n * k)};
}

MoeRouting MoeMlp::route_on_host(const Tensor& x) {
  const int64_t n = x.size(0), num_experts = moe_.n_routed_experts, k = moe_.num_experts_per_tok;
  if (n == 0) return MoeRouting{};
  Tensor logits = backend_.empty(DType::f32, {n, num_experts});
  backend_.linear(x, gate_weight_, Tensor(), logits);
  Tensor ids = backend_.empty(DType::i32, {n, k}), weights = backend_.empty(DType::f32, {n, k});
  const bool on_device =
      backend_.moe_route(logits, bias_weight_, MoeRouteParams::from(moe_), ids, weights);
  return on_device ? host_routing(logits, &ids, &weights) : host_routing(logits, nullptr, nullptr);
}

Status MoeMlp::forward_dispatched(const Tensor& x, Tensor out, Collective& collective) {
  const int64_t n = x.size(0), hidden = x.size(1), k = moe_.num_experts_per_tok;
  const int64_t size = collective.size();
  if (size != moe_.expert_parallel_size || collective.rank() != moe_.expert_parallel_rank)
    return make_error(ErrorCode::internal, "MoE dispatch: the collective is not the experts' rank group");
  run_shared(x, out);  // this rank's slice of the shared experts, every token
  if (n == 0) return Status::success();
  const TokenShare own = token_share(n, collective.rank(), size);
  const MoeRouting routing = own.count > 0 ? route_on_host(x.rows(own.first, own.count)) : MoeRouting{};
  const MoeDispatchPlan plan =
      plan_moe_dispatch(routing, own.first, own.count, k, moe_.n_routed_experts, size);
  auto recv_rows = collective.all_to_all_counts(plan.send_rows);
  if (!recv_rows.ok()) return recv_rows.error();
  const int64_t num_sent = int64_t(plan.token_of_row.size());
  int64_t num_received = 0;
  for (int64_t c : recv_rows.value()) num_received += c;

  // Dispatch: the rows, then their (expert, weight) pairs.
  Tensor send = backend_.empty(x.dtype(), {num_sent, hidden});
  if (num_sent > 0) backend_.gather_rows(x, plan.token_of_row, send);
  Tensor send_pairs = backend_.empty(DType::f32, {num_sent, 2 * k});
  if (num_sent > 0) backend_.copy(Tensor::from_f32(plan.pairs, {num_sent, 2 * k}), send_pairs);
  Tensor received = backend_.empty(x.dtype(), {num_received, hidden});
  Tensor received_pairs = backend_.empty(DType::f32, {num_received, 2 * k});
  TROUPE_TRY(collective.all_to_all(send, plan.send_rows, received, recv_rows.value()));
  TROUPE_TRY(collective.all_to_all(send_pairs, plan.send_rows, received_pairs, recv_rows.value()));

  // The local experts on the rows that came: one weighted sum per row (grouped on the device
  // where the backend packed them; the -1 experts are no local one's).
  Tensor sums = backend_.empty(DType::f32, {num_received, hidden});
  if (num_received > 0) {
    backend_.copy(Tensor::zeros(DType::f32, {num_received, hidden}), sums);
    const Tensor host_pairs = backend_.to_host(received_pairs);
    const MoeRouting arrived = routing_of_pairs(host_pairs.data<float>(), num_received, k);
    bool grouped = false;
    if (packed_.defined() && !packed_.has_shared) {
      Tensor ids = backend_.empty(DType::i32, {num_received, k}), weights = backend_.empty(DType::f32, {num_received, k});
      backend_.copy(Tensor::from_i32(arrived.experts, {num_received, k}), ids);
      backend_.copy(Tensor::from_f32(arrived.weights, {num_received, k}), weights);
      grouped = grouped_->moe_experts(received, ids, weights, packed_, moe_.local_expert_begin(),
                                      moe_.n_routed_experts, sums);
    }
    if (!grouped) run_experts_on_host(received, arrived, sums);
  }

  // Combine: the sums go back in the order their rows came; each lands on its token's row.
  Tensor back = backend_.empty(DType::f32, {num_sent, hidden});
  TROUPE_TRY(collective.all_to_all(sums, recv_rows.value(), back, plan.send_rows));
  if (num_sent > 0) backend_.add_rows_scaled(back, plan.token_of_row, std::vector<float>(size_t(num_sent), 1.0f), out);
  return Status::success();
}

void MoeMlp::run_experts_on_host(const Tensor& x, const MoeRouting& routing, Tensor out) {
  const int64_t n = x.size(0), hidden = x.size(1), k = moe_.num_experts_per_tok;
  const int64_t first = moe_.local_expert_begin();
  for (int64_t e = first; e < moe_.local_expert_end(); ++e) {
    std::vector<int32_t> rows;
    std::vector<float> weights;
    for (int64_t i = 0; i < n * k; ++i) {
      if (routing.experts[size_t(i)] != e) continue;
      rows.push_back(int32_t(i / k));
      weights.push_back(routing.weights[size_t(i)]);
    }
    if (rows.empty()) continue;
    const int64_t m = int64_t(rows.size());
    Tensor picked = backend_.empty(x.dtype(), {m, hidden});
    backend_.gather_rows(x, rows, picked);
    Tensor y = backend_.empty(DType::f32, {m, hidden});
    experts_[size_t(e - first)]->forward(picked, y);
    backend_.add_rows_scaled(y, rows, weights, out);
  }
}

}  // namespace troupe
