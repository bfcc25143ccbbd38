// config.json of DeepSeek-V3/R1 and Qwen3: MLA, MoE, YaRN, quantization_config and
// generation_config.json defaults; unsupported values refused in one line naming the field.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/model_config.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;

// DeepSeek-R1's config.json as downloaded (the fields that matter, real values).
json r1_config() {
  return json::parse(R"({
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "vocab_size": 129280, "hidden_size": 7168, "intermediate_size": 18432, "moe_intermediate_size": 2048,
    "num_hidden_layers": 61, "num_attention_heads": 128, "num_key_value_heads": 128,
    "max_position_embeddings": 163840, "rms_norm_eps": 1e-06, "rope_theta": 10000,
    "q_lora_rank": 1536, "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
    "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4,
    "topk_method": "noaux_tc", "scoring_func": "sigmoid", "routed_scaling_factor": 2.5, "norm_topk_prob": true,
    "first_k_dense_replace": 3, "moe_layer_freq": 1, "num_nextn_predict_layers": 1,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
                     "original_max_position_embeddings": 4096, "type": "yarn"},
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "weight_block_size": [128, 128]},
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "bos_token_id": 0, "eos_token_id": 1})");
}

Result<ModelConfig> parse(const json& config, const std::string& generation = "") {
  return ModelConfig::parse(config.dump(), generation, "/models/r1/config.json");
}

void expect_refused(const json& config, ErrorCode code, const std::vector<std::string>& words) {
  auto parsed = parse(config);
  ASSERT_FALSE(parsed.ok()) << config.dump();
  EXPECT_EQ(parsed.error().code, code) << parsed.error().message;
  EXPECT_EQ(parsed.error().message.find('\n'), std::string::npos) << "one line: " << parsed.error().message;
  for (const auto& word : words)
    EXPECT_NE(parsed.error().message.find(word), std::string::npos) << "'" << word << "' not in: " << parsed.error().message;
}

TEST(DeepseekConfig, ParsesR1) {
  auto config = parse(r1_config(), R"({"bos_token_id": 0, "eos_token_id": 1, "do_sample": true,
                                      "temperature": 0.6, "top_p": 0.95})");
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->architecture, "DeepseekV3ForCausalLM");
  EXPECT_EQ(config->mla.q_lora_rank, 1536);
  EXPECT_EQ(config->mla.kv_lora_rank, 512);
  EXPECT_EQ(config->mla.cache_entry(), 576);  // the latent and k_pe R1 caches per token and layer
  EXPECT_EQ(config->head_dim, 192);           // qk_nope + qk_rope
  EXPECT_EQ(config->moe.n_routed_experts, 256);
  EXPECT_EQ(config->moe.moe_intermediate_size, 2048);
  EXPECT_EQ(config->moe.n_group, 8);
  EXPECT_EQ(config->moe.topk_group, 4);
  EXPECT_DOUBLE_EQ(config->moe.routed_scaling_factor, 2.5);
  EXPECT_FALSE(config->moe.is_moe_layer(2));
  EXPECT_TRUE(config->moe.is_moe_layer(3));
  EXPECT_EQ(config->num_nextn_predict_layers, 1);
  EXPECT_EQ(config->rope_scaling.type, "yarn");
  EXPECT_DOUBLE_EQ(config->rope_scaling.factor, 40);
  EXPECT_DOUBLE_EQ(config->rope_scaling.mscale_all_dim, 1.0);
  EXPECT_EQ(config->rope_scaling.original_max_position_embeddings, 4096);
  EXPECT_TRUE(config->quantization.is_fp8());
  EXPECT_EQ(config->quantization.block_n, 128);
  EXPECT_DOUBLE_EQ(config->generation_defaults.temperature, 0.6);
  EXPECT_DOUBLE_EQ(config->generation_defaults.top_p, 0.95);
  EXPECT_EQ(config->generation_defaults.top_k, -1);
}

TEST(DeepseekConfig, ReadsTransformersRopeParametersAndANullQLoraRank) {
  json source = r1_config();
  source.erase("rope_scaling");
  source.erase("rope_theta");
  source["rope_parameters"] = {{"rope_type", "yarn"}, {"rope_theta", 10000.0}, {"factor", 4.0},
                               {"mscale", 0.707}, {"mscale_all_dim", 0.707},
                               {"original_max_position_embeddings", 128}, {"beta_fast", 32}, {"beta_slow", 1}};
  source["q_lora_rank"] = nullptr;
  source.erase("quantization_config");
  auto config = parse(source);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->mla.q_lora_rank, 0);
  EXPECT_EQ(config->rope_scaling.type, "yarn");
  EXPECT_DOUBLE_EQ(config->rope_scaling.factor, 4.0);
  EXPECT_DOUBLE_EQ(config->rope_scaling.mscale, 0.707);
  EXPECT_EQ(config->rope_scaling.original_max_position_embeddings, 128);
  EXPECT_FALSE(config->quantization.is_fp8());
}

TEST(DeepseekConfig, RefusesWhatItCannotServeNamingTheField) {
  json c = r1_config();
  c["scoring_func"] = "softmax";
  expect_refused(c, ErrorCode::unsupported, {"scoring_func", "softmax", "noaux_tc"});
  c = r1_config();
  c["topk_method"] = "greedy";
  expect_refused(c, ErrorCode::unsupported, {"topk_method", "greedy"});
  c = r1_config();
  c["quantization_config"] = {{"quant_method", "awq"}, {"bits", 4}};
  expect_refused(c, ErrorCode::unsupported, {"quantization_config.quant_method", "awq"});
  c["quantization_config"] = {{"quant_method", "gptq"}};
  expect_refused(c, ErrorCode::unsupported, {"quantization_config.quant_method", "gptq"});
  c = r1_config();
  c["quantization_config"]["weight_block_size"] = {64, 64};
  expect_refused(c, ErrorCode::unsupported, {"quantization_config.weight_block_size", "[64,64]", "128"});
  // Without weight_block_size it is AutoFP8's one scale per tensor, and "static" activation scales
  // are read past (tests/unit/fp8_scales_test.cpp); an unknown scheme is still refused.
  c = r1_config();
  c["quantization_config"]["activation_scheme"] = "per-head";
  expect_refused(c, ErrorCode::unsupported, {"activation_scheme", "per-head"});
  c = r1_config();
  c["quantization_config"]["fmt"] = "e5m2";
  expect_refused(c, ErrorCode::unsupported, {"quantization_config.fmt", "e5m2"});
  c = r1_config();
  c["rope_interleave"] = false;
  expect_refused(c, ErrorCode::unsupported, {"rope_interleave"});
}

TEST(DeepseekConfig, RefusesInconsistentValuesNamingTheField) {
  json c = r1_config();
  c["n_group"] = 7;
  expect_refused(c, ErrorCode::corrupt_data, {"'n_group'", "divide n_routed_experts"});
  c = r1_config();
  c["topk_group"] = 9;
  expect_refused(c, ErrorCode::corrupt_data, {"'topk_group'"});
  c = r1_config();
  c["num_experts_per_tok"] = 300;
  expect_refused(c, ErrorCode::corrupt_data, {"'num_experts_per_tok'"});
  c = r1_config();
  c.erase("kv_lora_rank");
  expect_refused(c, ErrorCode::corrupt_data, {"'kv_lora_rank'", "missing"});
  c = r1_config();
  c["qk_rope_head_dim"] = 63;
  expect_refused(c, ErrorCode::corrupt_data, {"'qk_rope_head_dim'", "even"});
  c = r1_config();
  c.erase("moe_intermediate_size");
  expect_refused(c, ErrorCode::corrupt_data, {"'moe_intermediate_size'"});
  c = r1_config();
  c["rope_scaling"]["beta_slow"] = 64;
  expect_refused(c, ErrorCode::corrupt_data, {"rope_scaling.beta_fast"});
  c = r1_config();
  c["rope_scaling"]["type"] = "dynamic";
  expect_refused(c, ErrorCode::unsupported, {"rope_scaling", "dynamic"});
}

TEST(DeepseekConfig, GenerationDefaultsAreCheckedAndOptional) {
  auto none = parse(r1_config(), R"({"eos_token_id": 1})");
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_FALSE(none->generation_defaults.any());
  auto bad = parse(r1_config(), R"({"top_p": 1.5})");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("generation_config.json: field 'top_p'"), std::string::npos) << bad.error().message;
  auto with_k = parse(r1_config(), R"({"top_k": 20, "temperature": 0.7})");
  ASSERT_TRUE(with_k.ok()) << with_k.error().message;
  EXPECT_EQ(with_k->generation_defaults.top_k, 20);
}

TEST(Qwen3Config, ParsesQkNormAndAnExplicitHeadDim) {
  const json source = json::parse(R"({
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 1024,
    "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
    "head_dim": 128, "max_position_embeddings": 40960, "rms_norm_eps": 1e-06, "rope_theta": 1000000,
    "attention_bias": false, "tie_word_embeddings": true, "torch_dtype": "bfloat16", "eos_token_id": 151645})");
  auto config = parse(source);
  ASSERT_TRUE(config.ok()) << config.error().message;
  EXPECT_EQ(config->architecture, "Qwen3ForCausalLM");
  EXPECT_TRUE(config->qk_norm);
  EXPECT_EQ(config->head_dim, 128);  // not hidden / heads (64)
  EXPECT_FALSE(config->attention_bias);
  EXPECT_FALSE(config->mla.enabled());
  EXPECT_FALSE(config->moe.enabled());
}

}  // namespace
}  // namespace troupe

namespace troupe {
namespace {

// Found by fuzz_model_config: an integral float past int64's range was cast (undefined behaviour).
TEST(DeepseekConfigFuzzRegression, AnIntegerFieldPastInt64IsRefusedNamingIt) {
  for (const char* value : {"2.5e50", "-1e19", "9.3e18"}) {
    json config = r1_config();
    config["hidden_size"] = json::parse(value);
    auto parsed = parse(config);
    ASSERT_FALSE(parsed.ok()) << value;
    EXPECT_NE(parsed.error().message.find("hidden_size"), std::string::npos) << parsed.error().message;
  }
}

}  // namespace
}  // namespace troupe
