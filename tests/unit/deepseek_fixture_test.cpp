// The DeepSeek-V3 fixtures made by transformers (tools/make_deepseek_fixtures.py) load: config.json
// in both spellings (rope_parameters as transformers writes it, rope_scaling + quantization_config
// as R1 ships), every tensor the model will ask for (FP8 ones dequantized with their 128x128
// scales), the MTP layer stored past the last decoder layer left unread; the model loads on the CPU
// backend (its logits are checked in llama_model_fixture_test.cpp) and is refused in one line by
// backends without the MLA / MoE ops.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "backends/cpu_backend.hpp"
#include "models/model_loader.hpp"
#include "runtime/model_config.hpp"
#include "runtime/weight_store.hpp"
#include "tests/unit/fixture_oracle.hpp"

namespace troupe {
namespace {

TEST(DeepseekFixture, ConfigsParseInBothSpellings) {
  const auto dirs = fixture_dirs(FixtureSet::deepseek);
  ASSERT_EQ(dirs.size(), 4u) << "deepseek-v3-tiny, -lite-tiny, -fp8-tiny and -r1dims-tiny";
  for (const auto& dir : dirs) {
    SCOPED_TRACE(dir);
    auto config = ModelConfig::load(dir);
    ASSERT_TRUE(config.ok()) << config.error().message;
    EXPECT_EQ(config->architecture, "DeepseekV3ForCausalLM");
    EXPECT_EQ(config->rope_scaling.type, "yarn");
    EXPECT_DOUBLE_EQ(config->rope_scaling.factor, 4.0);
    EXPECT_DOUBLE_EQ(config->rope_scaling.mscale_all_dim, 0.707);
    EXPECT_TRUE(config->mla.enabled());
    EXPECT_TRUE(config->moe.enabled());
    EXPECT_EQ(config->moe.n_routed_experts, 8);
    EXPECT_EQ(config->head_dim, config->mla.qk_nope_head_dim + config->mla.qk_rope_head_dim);
    const bool lite = dir.find("lite") != std::string::npos, fp8 = dir.find("fp8") != std::string::npos;
    EXPECT_EQ(config->mla.q_lora_rank == 0, lite);
    EXPECT_EQ(config->quantization.is_fp8(), fp8);
    EXPECT_EQ(config->num_nextn_predict_layers, 1);  // transformers writes 1; R1 has 1
  }
}

// The names a DeepSeek-V3 layer reads (per-expert names, as transformers saves them).
std::vector<std::string> layer_tensors(const ModelConfig& c, int64_t layer) {
  const std::string p = "model.layers." + std::to_string(layer) + ".";
  std::vector<std::string> names = {p + "input_layernorm.weight", p + "post_attention_layernorm.weight",
                                    p + "self_attn.kv_a_proj_with_mqa.weight", p + "self_attn.kv_a_layernorm.weight",
                                    p + "self_attn.kv_b_proj.weight", p + "self_attn.o_proj.weight"};
  if (c.mla.q_lora_rank > 0) {
    for (const char* n : {"q_a_proj.weight", "q_a_layernorm.weight", "q_b_proj.weight"}) names.push_back(p + "self_attn." + n);
  } else {
    names.push_back(p + "self_attn.q_proj.weight");
  }
  const char* projections[] = {"gate_proj.weight", "up_proj.weight", "down_proj.weight"};
  if (!c.moe.is_moe_layer(layer)) {
    for (const char* n : projections) names.push_back(p + "mlp." + n);
    return names;
  }
  names.push_back(p + "mlp.gate.weight");
  names.push_back(p + "mlp.gate.e_score_correction_bias");
  for (int64_t e = 0; e < c.moe.n_routed_experts; ++e)
    for (const char* n : projections) names.push_back(p + "mlp.experts." + std::to_string(e) + "." + n);
  for (const char* n : projections) names.push_back(p + "mlp.shared_experts." + n);
  return names;
}

TEST(DeepseekFixture, EveryTensorLoadsAndFp8OnesDequantize) {
  for (const auto& dir : fixture_dirs(FixtureSet::deepseek)) {
    SCOPED_TRACE(dir);
    auto config = ModelConfig::load(dir);
    ASSERT_TRUE(config.ok()) << config.error().message;
    auto store = WeightStore::open(dir);
    ASSERT_TRUE(store.ok()) << store.error().message;
    const WeightLoader load = weight_store_loader(store.value(), config->quantization);
    std::vector<std::string> names = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"};
    for (int64_t l = 0; l < config->num_hidden_layers; ++l) {
      auto more = layer_tensors(config.value(), l);
      names.insert(names.end(), more.begin(), more.end());
    }
    int64_t num_fp8 = 0;
    for (const auto& name : names) {
      auto view = store->get(name);
      ASSERT_TRUE(view.ok()) << view.error().message;
      auto tensor = load(name, view->shape);
      ASSERT_TRUE(tensor.ok()) << tensor.error().message;
      if (view->dtype != DType::f8_e4m3) continue;
      ++num_fp8;
      ASSERT_EQ(tensor->dtype(), DType::f32) << name;
      // Dequantized values are finite (exactness is Fp8BlockTest's; the logits test covers the rest).
      const float* w = tensor->data<float>();
      for (int64_t i = 0; i < tensor->numel(); ++i) ASSERT_TRUE(std::isfinite(w[i])) << name << " at " << i;
    }
    const bool fp8 = config->quantization.is_fp8();
    EXPECT_EQ(num_fp8 > 0, fp8);
    if (fp8) {
      // The MTP layer sits at index num_hidden_layers and is listed in the index but never read.
      EXPECT_TRUE(store->has("model.layers." + std::to_string(config->num_hidden_layers) + ".eh_proj.weight"));
      // kv_b_proj [4 x 64, 136] spans 2 x 2 blocks with partial edges.
      auto scale = store->get("model.layers.0.self_attn.kv_b_proj.weight_scale_inv");
      ASSERT_TRUE(scale.ok());
      EXPECT_EQ(scale->shape, (std::vector<int64_t>{2, 2}));
    }
  }
}

TEST(DeepseekFixture, LoadsOnTheCpuWithOneLatentCacheComponent) {
  CpuBackend backend(1);
  for (const auto& dir : fixture_dirs(FixtureSet::deepseek)) {
    SCOPED_TRACE(dir);
    auto model = load_model(dir, backend);
    ASSERT_TRUE(model.ok()) << model.error().message;
    const ModelConfig& c = model.value()->config();
    const KvCacheSpec spec = model.value()->kv_cache_spec(4, 16);
    ASSERT_EQ(spec.components.size(), 1u);
    EXPECT_EQ(spec.components[0].name, "latent");
    EXPECT_EQ(spec.components[0].num_heads, 1);
    EXPECT_EQ(spec.components[0].head_dim, c.mla.kv_lora_rank + c.mla.qk_rope_head_dim);
    EXPECT_TRUE(model.value()->supports_step_graphs());  // without tensor parallel
  }
}

// A backend without the MLA / MoE ops (the CPU and CUDA backends have them) is refused in one line.
class NoMlaBackend final : public Backend {
 public:
  Device device() const override { return inner_.device(); }
  std::string name() const override { return "no-mla"; }
  Tensor empty(DType dtype, std::vector<int64_t> shape) override { return inner_.empty(dtype, std::move(shape)); }
  Result<Tensor> upload_weight(const Tensor& host) override { return inner_.upload_weight(host); }
  Result<KvCache> create_kv_cache(const KvCacheSpec& spec) override { return inner_.create_kv_cache(spec); }
  Tensor to_host(const Tensor& t) override { return t; }
  void embedding(const Tensor&, const Tensor&, Tensor) override {}
  void rmsnorm(const Tensor&, const Tensor&, float, Tensor) override {}
  void add_rmsnorm(Tensor, const Tensor&, const Tensor&, float, Tensor) override {}
  void linear(const Tensor&, const Tensor&, const Tensor&, Tensor) override {}
  void rope(Tensor, Tensor, const Tensor&, const Tensor&) override {}
  void write_kv(Tensor, const Tensor&, const Tensor&) override {}
  void paged_attention(const Tensor&, const Tensor&, const Tensor&, const AttentionMetadata&, float, Tensor) override {}
  void silu_and_mul(const Tensor&, const Tensor&, Tensor) override {}
  void copy(const Tensor&, Tensor) override {}
  void add(const Tensor&, const Tensor&, Tensor) override {}
  void gather_rows(const Tensor&, const std::vector<int32_t>&, Tensor) override {}
  std::vector<int32_t> argmax(const Tensor&) override { return {}; }

 private:
  CpuBackend inner_{1};
};

TEST(DeepseekFixture, BackendsWithoutItsKernelsRefuseItInOneLine) {
  NoMlaBackend backend;
  for (const auto& dir : fixture_dirs(FixtureSet::deepseek)) {
    auto model = load_model(dir, backend);
    ASSERT_FALSE(model.ok());
    EXPECT_EQ(model.error().code, ErrorCode::unsupported);
    EXPECT_EQ(model.error().message, "DeepseekV3ForCausalLM needs a backend with the MLA / MoE ops (cpu or cuda)");
  }
}

}  // namespace
}  // namespace troupe
