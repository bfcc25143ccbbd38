// DecoderModel's residual forms (the norms inside the sublayers' first products, the adds inside
// their last: Backend::rmsnorm_linear, linear_add, mlp_residual) compute what the lazy adds of
// add_rmsnorm compute. A CPU backend that claims the fusion runs the Backend defaults of those ops
// (the same fp32 operations in the same order), so the logits and a middle stage's hidden states
// must be equal bit for bit; the fake counts its ops to show which path ran.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>

#include "backends/cpu_backend.hpp"
#include "models/llama_model.hpp"
#include "tests/unit/cpu_forwarding_backend.hpp"
#include "tests/unit/tiny_model_support.hpp"

namespace troupe {
namespace {

using testing::map_loader;
using testing::tiny_config;
using testing::tiny_weights;

// The CPU with Backend's default residual forms, claimed for batches of up to 8 tokens (as CUDA's).
class ResidualFusingCpu final : public CpuForwardingBackend {
 public:
  std::string name() const override { return "residual-fusing cpu"; }
  bool fuses_residual_norms(int64_t num_tokens) const override { return num_tokens >= 1 && num_tokens <= 8; }
  void add_rmsnorm(Tensor residual, const Tensor& x, const Tensor& w, float eps, Tensor out) override {
    ++calls["add_rmsnorm"];
    CpuForwardingBackend::add_rmsnorm(residual, x, w, eps, out);
  }
  void rmsnorm_linear(const Tensor& h, const Tensor& norm_weight, float eps, const Tensor& weight, const Tensor& bias,
                      Tensor out) override {
    ++calls["rmsnorm_linear"];
    Backend::rmsnorm_linear(h, norm_weight, eps, weight, bias, out);
  }
  void linear_add(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor residual) override {
    ++calls["linear_add"];
    Backend::linear_add(x, weight, bias, residual);
  }
  std::map<std::string, int> calls;
};

void add_decode(ForwardBatch& batch, int32_t id, int32_t position, const std::vector<int32_t>* table) {
  batch.token_ids.push_back(id);
  batch.positions.push_back(position);
  batch.seqs.push_back({1, position + 1, table, true});
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), size_t(a.numel()) * sizeof(float)) == 0;
}

class ResidualForms : public ::testing::TestWithParam<bool> {};

TEST_P(ResidualForms, EqualTheLazyAddsBitForBit) {
  const ModelConfig config = tiny_config(GetParam());  // Qwen2: q/k/v biases too
  const auto weights = tiny_weights(config, 5);
  CpuBackend plain(1);
  ResidualFusingCpu fusing;
  auto lazy = LlamaModel::load(config, plain, {}, map_loader(weights, nullptr));
  auto fused = LlamaModel::load(config, fusing, {}, map_loader(weights, nullptr));
  ASSERT_TRUE(lazy.ok() && fused.ok());
  auto lazy_cache = plain.create_kv_cache(lazy.value()->kv_cache_spec(16, 4));
  auto fused_cache = fusing.create_kv_cache(fused.value()->kv_cache_spec(16, 4));
  ASSERT_TRUE(lazy_cache.ok() && fused_cache.ok());

  // Two sequences' 9-token prefills (above 8 tokens: the lazy path on both), then 3 decode steps
  // of both (2 tokens: the residual forms on the fusing backend).
  const std::vector<int32_t> table_a = {0, 1, 2, 3}, table_b = {4, 5, 6, 7};
  ForwardBatch prefill;
  for (int32_t p = 0; p < 9; ++p) {
    prefill.token_ids.push_back((p * 7 + 3) % int32_t(config.vocab_size));
    prefill.positions.push_back(p);
  }
  prefill.seqs.push_back({9, 9, &table_a, true});
  for (int32_t p = 0; p < 9; ++p) {
    prefill.token_ids.push_back((p * 5 + 1) % int32_t(config.vocab_size));
    prefill.positions.push_back(p);
  }
  prefill.seqs.push_back({9, 9, &table_b, true});
  auto lazy_logits = lazy.value()->forward(prefill, lazy_cache.value(), LogitsMode::last_token);
  auto fused_logits = fused.value()->forward(prefill, fused_cache.value(), LogitsMode::last_token);
  ASSERT_TRUE(lazy_logits.ok() && fused_logits.ok());
  EXPECT_TRUE(bit_equal(lazy_logits.value(), fused_logits.value()));
  EXPECT_EQ(fusing.calls["rmsnorm_linear"], 0);

  for (int32_t step = 0; step < 3; ++step) {
    ForwardBatch decode;
    add_decode(decode, 11 + step, 9 + step, &table_a);
    add_decode(decode, 17 + step, 9 + step, &table_b);
    fusing.calls.clear();
    lazy_logits = lazy.value()->forward(decode, lazy_cache.value(), LogitsMode::last_token);
    fused_logits = fused.value()->forward(decode, fused_cache.value(), LogitsMode::last_token);
    ASSERT_TRUE(lazy_logits.ok() && fused_logits.ok());
    EXPECT_TRUE(bit_equal(lazy_logits.value(), fused_logits.value())) << "decode step " << step;
    const int layers = int(config.num_hidden_layers);
    EXPECT_EQ(fusing.calls["add_rmsnorm"], 0);
    EXPECT_EQ(fusing.calls["rmsnorm_linear"], 2 * layers);  // q/k/v and gate_up
    EXPECT_EQ(fusing.calls["linear_add"], 2 * layers);      // o and down
  }
}

// A first pipeline stage hands on h with every add done: the same hidden states.
TEST_P(ResidualForms, AFirstStageHandsOnTheSameHiddenStates) {
  const ModelConfig config = tiny_config(GetParam());
  const auto weights = tiny_weights(config, 9);
  CpuBackend plain(1);
  ResidualFusingCpu fusing;
  const LayerRange first{0, 1};
  auto lazy = LlamaModel::load(config, plain, first, map_loader(weights, nullptr));
  auto fused = LlamaModel::load(config, fusing, first, map_loader(weights, nullptr));
  ASSERT_TRUE(lazy.ok() && fused.ok());
  auto lazy_cache = plain.create_kv_cache(lazy.value()->kv_cache_spec(8, 4));
  auto fused_cache = fusing.create_kv_cache(fused.value()->kv_cache_spec(8, 4));
  ASSERT_TRUE(lazy_cache.ok() && fused_cache.ok());
  const std::vector<int32_t> table = {0, 1};
  ForwardBatch one;
  add_decode(one, 5, 0, &table);
  auto lazy_h = lazy.value()->forward(one, lazy_cache.value(), LogitsMode::last_token);
  auto fused_h = fused.value()->forward(one, fused_cache.value(), LogitsMode::last_token);
  ASSERT_TRUE(lazy_h.ok() && fused_h.ok());
  EXPECT_EQ(fused_h->shape(), (std::vector<int64_t>{1, config.hidden_size}));
  EXPECT_TRUE(bit_equal(lazy_h.value(), fused_h.value()));
  EXPECT_GT(fusing.calls["linear_add"], 0);
}

INSTANTIATE_TEST_SUITE_P(Arch, ResidualForms, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "qwen2" : "llama"; });

}  // namespace
}  // namespace troupe
