// MoeMlp's two routes: a backend with Backend::moe_route (here the CPU backend plus the router's CPU
// reference, standing in for the CUDA kernel) gives the layer the same output as the host's
// route_tokens, and the CPU backend itself keeps the host route. And MoeMlp's use of a grouped
// backend's moe_shared_ahead (runtime/moe_experts.hpp): the shared expert computed once, joined
// where moe_experts or moe_route refuses, the output the host loop's; otherwise its gate_up hinted
// (Backend::prefetch_weight) before the routing.
#include <gtest/gtest.h>

#include <random>

#include "backends/cpu_backend.hpp"
#include "kernels/moe_routing.hpp"
#include "models/dummy_weights.hpp"
#include "models/moe.hpp"
#include "runtime/moe_experts.hpp"

namespace troupe {
namespace {

// The CPU backend's ops, plus moe_route through kernels::moe_route_ref.
class RefRouteBackend : public Backend {
 public:
  int num_routes = 0;
  bool route_refuses = false;  // moe_route returns false (the host route then runs)

  Device device() const override { return inner_.device(); }
  std::string name() const override { return "cpu+moe_route_ref"; }
  bool supports_mla_moe() const override { return true; }
  Tensor empty(DType dtype, std::vector<int64_t> shape) override { return inner_.empty(dtype, std::move(shape)); }
  Result<Tensor> upload_weight(const Tensor& host) override { return inner_.upload_weight(host); }
  Result<KvCache> create_kv_cache(const KvCacheSpec& spec) override { return inner_.create_kv_cache(spec); }
  Tensor to_host(const Tensor& t) override { return inner_.to_host(t); }
  void embedding(const Tensor& ids, const Tensor& table, Tensor out) override { inner_.embedding(ids, table, out); }
  void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor out) override { inner_.rmsnorm(x, w, eps, out); }
  void add_rmsnorm(Tensor r, const Tensor& x, const Tensor& w, float eps, Tensor out) override {
    inner_.add_rmsnorm(r, x, w, eps, out);
  }
  void linear(const Tensor& x, const Tensor& w, const Tensor& b, Tensor out) override { inner_.linear(x, w, b, out); }
  void rope(Tensor q, Tensor k, const Tensor& pos, const Tensor& f) override { inner_.rope(q, k, pos, f); }
  void write_kv(Tensor c, const Tensor& x, const Tensor& s) override { inner_.write_kv(c, x, s); }
  void paged_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMetadata& m, float scale,
                       Tensor out) override {
    inner_.paged_attention(q, k, v, m, scale, out);
  }
  void silu_and_mul(const Tensor& g, const Tensor& u, Tensor out) override { inner_.silu_and_mul(g, u, out); }
  void silu_and_mul_packed(const Tensor& gu, Tensor out) override { inner_.silu_and_mul_packed(gu, out); }
  void mlp(const Tensor& x, const Tensor& gu, const Tensor& gub, const Tensor& d, const Tensor& db, Tensor out) override {
    inner_.mlp(x, gu, gub, d, db, out);
  }
  void add_rows_scaled(const Tensor& x, const std::vector<int32_t>& rows, const std::vector<float>& w,
                       Tensor out) override {
    inner_.add_rows_scaled(x, rows, w, out);
  }
  void copy(const Tensor& src, Tensor dst) override { inner_.copy(src, dst); }
  void add(const Tensor& a, const Tensor& b, Tensor out) override { inner_.add(a, b, out); }
  void gather_rows(const Tensor& x, const std::vector<int32_t>& rows, Tensor out) override {
    inner_.gather_rows(x, rows, out);
  }
  std::vector<int32_t> argmax(const Tensor& logits) override { return inner_.argmax(logits); }
  bool moe_route(const Tensor& logits, const Tensor& bias, const MoeRouteParams& p, Tensor ids,
                 Tensor weights) override {
    if (route_refuses) return false;
    ++num_routes;
    const kernels::MoeRouteParams kp{int32_t(p.num_experts), int32_t(p.num_groups), int32_t(p.topk_group),
                                     int32_t(p.top_k), p.norm_topk_prob, p.routed_scaling_factor};
    kernels::moe_route_ref(logits.data<float>(), bias.data<float>(), ids.data<int32_t>(), weights.data<float>(),
                           logits.size(0), kp);
    return true;
  }

 protected:
  CpuBackend inner_{1};
};

// RefRouteBackend as a grouped backend over the same CPU ops: moe_experts runs the experts the
// host loop's way (the shared expert into out first when packed and not ahead, then each expert's
// rows added in expert order, so the output is the host layer's bit for bit) or refuses;
// moe_shared_ahead computes the shared expert at once and leaves it pending until moe_experts
// or moe_shared_join takes it.
class AheadBackend final : public RefRouteBackend, public MoeExpertsBackend {
 public:
  bool ahead = false, refuse = false;
  bool pending = false;
  int shared_runs = 0, joins = 0;  // the shared expert's MLP calls (any path), joins of pending work
  int shared_prefetches = 0, other_prefetches = 0;  // prefetch_weight hints: the shared gate_up, others

  bool keeps_fp8_weights() const override { return true; }  // MoeMlp::load packs the experts
  void mlp(const Tensor& x, const Tensor& gu, const Tensor& gub, const Tensor& d, const Tensor& db, Tensor out) override {
    if (gu.raw() == shared_gate_up_.raw()) ++shared_runs;
    inner_.mlp(x, gu, gub, d, db, out);
  }
  Result<MoeExperts> pack_moe_experts(const std::vector<Tensor>& gate_up, const std::vector<Tensor>& down,
                                      const Tensor& shared_gate_up, const Tensor& shared_down) override {
    MoeExperts packed;
    packed.table = Tensor::zeros(DType::u8, {1});
    for (size_t e = 0; e < gate_up.size(); ++e) packed.weights.insert(packed.weights.end(), {gate_up[e], down[e]});
    packed.has_shared = shared_gate_up.defined();
    if (packed.has_shared) packed.weights.insert(packed.weights.end(), {shared_gate_up, shared_down});
    packed.num_local = int64_t(gate_up.size());
    packed.hidden = gate_up[0].size(1);
    packed.intermediate = down[0].size(1);
    shared_gate_up_ = shared_gate_up;
    return packed;
  }
  void prefetch_weight(const Tensor& weight) override {
    ++(weight.raw() == shared_gate_up_.raw() ? shared_prefetches : other_prefetches);
  }
  bool moe_shared_ahead(const Tensor& x, const MoeExperts& experts, Tensor out) override {
    if (!ahead || pending) return false;
    pending = true;
    run_pair(x, experts, experts.num_local, out);
    return true;
  }
  void moe_shared_join() override {
    if (pending) ++joins;
    pending = false;
  }
  bool moe_experts(const Tensor& x, const Tensor& topk_ids, const Tensor& topk_weights, const MoeExperts& experts,
                   int64_t expert_begin, int64_t num_experts, Tensor out) override {
    (void)num_experts;
    if (refuse) return false;
    if (experts.has_shared && !pending) run_pair(x, experts, experts.num_local, out);
    pending = false;
    const int64_t n = x.size(0), k = topk_ids.size(1), hidden = x.size(1);
    for (int64_t e = 0; e < experts.num_local; ++e) {
      std::vector<int32_t> rows;
      std::vector<float> weights;
      for (int64_t i = 0; i < n * k; ++i)
        if (topk_ids.data<int32_t>()[i] == expert_begin + e) {
          rows.push_back(int32_t(i / k));
          weights.push_back(topk_weights.data<float>()[i]);
        }
      if (rows.empty()) continue;
      Tensor picked = inner_.empty(x.dtype(), {int64_t(rows.size()), hidden});
      inner_.gather_rows(x, rows, picked);
      Tensor y = inner_.empty(DType::f32, {int64_t(rows.size()), hidden});
      run_pair(picked, experts, e, y);
      inner_.add_rows_scaled(y, rows, weights, out);
    }
    return true;
  }

 private:
  void run_pair(const Tensor& x, const MoeExperts& experts, int64_t e, Tensor out) {
    mlp(x, experts.weights[size_t(2 * e)], Tensor(), experts.weights[size_t(2 * e + 1)], Tensor(), out);
  }
  Tensor shared_gate_up_;
};

ModelConfig moe_model_config() {
  ModelConfig c;
  c.hidden_size = 24;
  c.moe.n_routed_experts = 16;
  c.moe.n_group = 4;
  c.moe.topk_group = 2;
  c.moe.num_experts_per_tok = 4;
  c.moe.moe_intermediate_size = 8;
  c.moe.n_shared_experts = 1;
  c.moe.routed_scaling_factor = 2.5;
  return c;
}

TEST(MoeMlpRoute, DeviceRouteGivesTheHostRoutesOutput) {
  const ModelConfig config = moe_model_config();
  const WeightLoader weights = dummy_weight_loader({.seed = 3, .scale = 0.5f});
  CpuBackend cpu(1);
  RefRouteBackend routed;
  auto host_layer = MoeMlp::load(config, "model.layers.1.mlp.", weights, cpu);
  auto device_layer = MoeMlp::load(config, "model.layers.1.mlp.", weights, routed);
  ASSERT_TRUE(host_layer.ok()) << host_layer.error().message;
  ASSERT_TRUE(device_layer.ok()) << device_layer.error().message;
  for (int64_t n : {1, 3, 17}) {
    std::mt19937 rng(static_cast<uint32_t>(n));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> values(static_cast<size_t>(n * config.hidden_size));
    for (float& v : values) v = normal(rng);
    const Tensor x = Tensor::from_f32(values, {n, config.hidden_size});
    Tensor host_out = cpu.empty(DType::f32, {n, config.hidden_size});
    Tensor device_out = routed.empty(DType::f32, {n, config.hidden_size});
    host_layer.value()->forward(x, host_out);
    device_layer.value()->forward(x, device_out);
    const std::vector<float> a(host_out.data<float>(), host_out.data<float>() + host_out.numel());
    const std::vector<float> b(device_out.data<float>(), device_out.data<float>() + device_out.numel());
    EXPECT_EQ(a, b) << "n=" << n;
  }
  EXPECT_EQ(routed.num_routes, 3);
  EXPECT_FALSE(cpu.moe_route(Tensor(), Tensor(), {}, Tensor(), Tensor()));  // the CPU keeps the host route
}

TEST(MoeMlpRoute, SharedExpertAheadIsComputedOnceAndJoinedWhereTheGroupedPathRefuses) {
  const ModelConfig config = moe_model_config();
  const WeightLoader weights = dummy_weight_loader({.seed = 5, .scale = 0.5f});
  CpuBackend cpu(1);
  auto host_layer = MoeMlp::load(config, "model.layers.1.mlp.", weights, cpu);
  ASSERT_TRUE(host_layer.ok()) << host_layer.error().message;
  struct Case {
    bool ahead, refuse, route_refuses;
    int joins;  // the pending work MoeMlp's moe_shared_join calls find
  };
  for (const Case c : {Case{false, false, false, 0}, Case{true, false, false, 0}, Case{true, true, false, 1},
                       Case{false, true, false, 0}, Case{true, false, true, 1}}) {
    SCOPED_TRACE(std::string(c.ahead ? "ahead" : "not ahead") + (c.refuse ? ", moe_experts refuses" : "") +
                 (c.route_refuses ? ", moe_route refuses" : ""));
    AheadBackend grouped;
    auto layer = MoeMlp::load(config, "model.layers.1.mlp.", weights, grouped);
    ASSERT_TRUE(layer.ok()) << layer.error().message;
    grouped.ahead = c.ahead;
    grouped.refuse = c.refuse;
    grouped.route_refuses = c.route_refuses;
    const int64_t n = 5;
    std::mt19937 rng(7);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> values(static_cast<size_t>(n * config.hidden_size));
    for (float& v : values) v = normal(rng);
    const Tensor x = Tensor::from_f32(values, {n, config.hidden_size});
    Tensor want = cpu.empty(DType::f32, {n, config.hidden_size}), got = grouped.empty(DType::f32, {n, config.hidden_size});
    host_layer.value()->forward(x, want);
    layer.value()->forward(x, got);
    EXPECT_EQ(std::vector<float>(want.data<float>(), want.data<float>() + want.numel()),
              std::vector<float>(got.data<float>(), got.data<float>() + got.numel()));
    EXPECT_EQ(grouped.shared_runs, 1);
    EXPECT_EQ(grouped.joins, c.joins);
    EXPECT_FALSE(grouped.pending);
    // Not ahead, the shared gate_up is hinted once, before the routing (5 tokens: a decode batch).
    EXPECT_EQ(grouped.shared_prefetches, c.ahead ? 0 : 1);
    EXPECT_EQ(grouped.other_prefetches, 0);
  }
}

}  // namespace
}  // namespace troupe
