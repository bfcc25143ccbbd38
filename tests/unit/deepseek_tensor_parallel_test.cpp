// DeepSeek-V3 tensor parallel on the CPU backend (thread ranks summing through host memory): MLA
// heads and the dense / shared-expert MLPs split Megatron-style, routed experts expert-parallel.
// Every DeepSeek fixture over 2 and 4 ranks must match its transformers oracle as TP=1 does and
// stay within kTpVsOneRank of TP=1's logits (fp32; only the order of the sums differs).
// Both --all2all-backend modes: the partial sums of every rank's experts (allgather_reducescatter)
// and each rank's tokens dispatched to their experts and back (all_to_all).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "backends/cpu_backend.hpp"
#include "backends/stage_model_factory.hpp"
#include "engine/model_runner.hpp"
#include "models/model_loader.hpp"
#include "models/tensor_parallel.hpp"
#include "runtime/model_config.hpp"
#include "runtime/safetensors_file.hpp"
#include "runtime/weight_store.hpp"
#include "tests/unit/fixture_oracle.hpp"

namespace troupe {
namespace {

constexpr float kVsOracle = 1e-3f;      // the TP=1 fixture test's bound (llama_model_fixture_test)
constexpr float kTpVsOneRank = 5e-5f;  // TP=N against TP=1, both fp32 on the CPU

using PromptLogits = std::vector<std::vector<float>>;  // [position][vocab]

struct GreedyRuns {
  std::vector<PromptLogits> logits;  // per prompt
  std::vector<std::vector<int32_t>> tokens;
};

GreedyRuns run_prompts(const std::string& dir, const std::string& load_format, int64_t size, const Oracle& oracle,
                       const std::string& all2all_backend = "allgather_reducescatter") {
  Config config;
  config.all2all_backend = all2all_backend;
  config.model = dir;
  config.load_format = load_format;
  config.tensor_parallel_size = size;
  config.num_threads = size;
  config.device = "cpu";
  CpuBackend rank0(1);
  auto model = backends::load_stage_model(config, rank0);
  EXPECT_TRUE(model.ok()) << model.error().message;
  GreedyRuns run;
  if (!model.ok()) return run;
  for (const auto& prompt : oracle.prompts) {
    auto result = greedy_generate(*model.value(), rank0, prompt, oracle.max_new_tokens, 16, true);
    EXPECT_TRUE(result.ok()) << result.error().message;
    if (!result.ok()) return run;
    run.logits.push_back(result->prompt_logits);
    run.tokens.push_back(result->tokens);
  }
  return run;
}

float max_diff(const std::vector<float>& got, const float* want) {
  float diff = 0.0f;
  for (size_t v = 0; v < got.size(); ++v) diff = std::max(diff, std::abs(got[v] - want[v]));
  return diff;
}

std::string name_of(const std::string& dir) { return dir.substr(dir.rfind('/') + 1); }

void expect_shards_match(const std::string& all2all_backend) {
  const auto dirs = fixture_dirs(FixtureSet::deepseek);
  ASSERT_EQ(dirs.size(), 4u);
  for (const auto& dir : dirs) {
    auto full = ModelConfig::load(dir);
    ASSERT_TRUE(full.ok());
    const Oracle oracle = read_oracle(dir);
    auto oracle_logits = SafetensorsFile::open(dir + "/oracle_logits.safetensors");
    ASSERT_TRUE(oracle_logits.ok());
    const int64_t vocab = full->vocab_size;
    const GreedyRuns one = run_prompts(dir, "auto", 1, oracle);
    ASSERT_EQ(one.logits.size(), oracle.prompts.size()) << dir;
    for (int64_t size : {2, 4}) {
      SCOPED_TRACE(dir + " TP=" + std::to_string(size) + " " + all2all_backend);
      const GreedyRuns tp = run_prompts(dir, "auto", size, oracle, all2all_backend);
      ASSERT_EQ(tp.logits.size(), oracle.prompts.size());
      float vs_oracle = 0.0f, vs_one = 0.0f;
      for (size_t i = 0; i < oracle.prompts.size(); ++i) {
        const float* want = static_cast<const float*>(oracle_logits.value()->find("logits." + std::to_string(i))->data);
        for (size_t t = 0; t < tp.logits[i].size(); ++t) {
          vs_oracle = std::max(vs_oracle, max_diff(tp.logits[i][t], want + int64_t(t) * vocab));
          vs_one = std::max(vs_one, max_diff(tp.logits[i][t], one.logits[i][t].data()));
        }
        EXPECT_EQ(tp.tokens[i], oracle.greedy[i]) << "prompt " << i;
      }
      EXPECT_LE(vs_oracle, kVsOracle);
      EXPECT_LE(vs_one, kTpVsOneRank);
      std::printf("%s TP=%lld %s: max |logit diff| vs transformers %.2e, vs TP=1 %.2e\n", name_of(dir).c_str(),
                  static_cast<long long>(size), all2all_backend.c_str(), double(vs_oracle), double(vs_one));
    }
  }
}

TEST(DeepseekTensorParallel, ShardsMatchOneRankAndTheTransformersOracle) { expect_shards_match("allgather_reducescatter"); }

// --all2all-backend all_to_all: each rank routes its share of the tokens and sends them to their
// experts' ranks (models/moe_dispatch.hpp); same bounds.
TEST(DeepseekTensorParallel, DispatchedTokensMatchOneRankAndTheTransformersOracle) { expect_shards_match("all_to_all"); }

TEST(DeepseekTensorParallel, DummyWeightsShardLikeOneRank) {
  const std::string dir = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/deepseek-v3-tiny";
  Oracle oracle = read_oracle(dir);
  oracle.prompts.resize(1);
  oracle.max_new_tokens = 4;
  const GreedyRuns one = run_prompts(dir, "dummy", 1, oracle);
  const GreedyRuns two = run_prompts(dir, "dummy", 2, oracle);
  ASSERT_EQ(one.logits.size(), 1u);
  ASSERT_EQ(two.logits.size(), 1u);
  float diff = 0.0f;
  for (size_t t = 0; t < one.logits[0].size(); ++t)
    diff = std::max(diff, max_diff(two.logits[0][t], one.logits[0][t].data()));
  EXPECT_LE(diff, kTpVsOneRank);
  EXPECT_EQ(two.tokens, one.tokens);
}

TEST(DeepseekTensorParallel, SizesThatDoNotDivideAreRefusedByName) {
  auto full = ModelConfig::load(std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/deepseek-v3-tiny");
  ASSERT_TRUE(full.ok());
  auto refusal = [](const ModelConfig& c, int64_t size) {
    auto local = tensor_parallel_config(c, size);
    EXPECT_FALSE(local.ok());
    return local.ok() ? std::string() : local.error().message;
  };
  EXPECT_NE(refusal(full.value(), 3).find("num_attention_heads (4)"), std::string::npos);

  ModelConfig c = full.value();  // 8 heads over 4 ranks; 6 experts do not split
  c.num_attention_heads = c.num_key_value_heads = 8;
  c.moe.n_routed_experts = 6;
  EXPECT_NE(refusal(c, 4).find("n_routed_experts (6)"), std::string::npos);

  c = full.value();  // the shared expert's 34 does not split over 4
  c.moe.moe_intermediate_size = 34;
  EXPECT_NE(refusal(c, 4).find("moe_intermediate_size * n_shared_experts (34)"), std::string::npos);

  c = full.value();  // the dense layer's 98 does not split over 4 ...
  c.intermediate_size = 98;
  EXPECT_NE(refusal(c, 4).find("model's intermediate_size (98)"), std::string::npos);
  c.moe.first_k_dense_replace = 0;  // ... unless no layer is dense
  auto local = tensor_parallel_config(c, 4, 3);
  ASSERT_TRUE(local.ok()) << local.error().message;
  EXPECT_EQ(local->num_attention_heads, 1);
  EXPECT_EQ(local->moe.n_routed_experts, 8);  // the router scores all of them
  EXPECT_EQ(local->moe.local_expert_begin(), 6);
  EXPECT_EQ(local->moe.local_expert_end(), 8);
  EXPECT_EQ(local->moe.shared_intermediate_size(), 8);
}

TEST(DeepseekTensorParallel, TheLoaderSplitsByModuleNotBySubstring) {
  // rank-local shape -> the shape the rank asks the full checkpoint for (size 2).
  struct Case {
    const char* name;
    std::vector<int64_t> local, asked;
  };
  const Case cases[] = {
      {"model.layers.0.self_attn.q_proj.weight", {48, 64}, {96, 64}},
      {"model.layers.0.self_attn.q_a_proj.weight", {48, 64}, {48, 64}},
      {"model.layers.0.self_attn.q_a_layernorm.weight", {48}, {48}},
      {"model.layers.0.self_attn.q_b_proj.weight", {48, 48}, {96, 48}},
      {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight", {40, 64}, {40, 64}},
      {"model.layers.0.self_attn.kv_a_layernorm.weight", {32}, {32}},
      {"model.layers.0.self_attn.kv_b_proj.weight", {64, 32}, {128, 32}},
      {"model.layers.0.self_attn.o_proj.weight", {64, 32}, {64, 64}},
      {"model.layers.0.mlp.gate_proj.weight", {48, 64}, {96, 64}},
      {"model.layers.0.mlp.down_proj.weight", {64, 48}, {64, 96}},
      {"model.layers.1.mlp.gate.weight", {8, 64}, {8, 64}},
      {"model.layers.1.mlp.gate.e_score_correction_bias", {8}, {8}},
      {"model.layers.1.mlp.experts.5.gate_proj.weight", {32, 64}, {32, 64}},
      {"model.layers.1.mlp.experts.5.down_proj.weight", {64, 32}, {64, 32}},
      {"model.layers.1.mlp.shared_experts.up_proj.weight", {16, 64}, {32, 64}},
      {"model.layers.1.mlp.shared_experts.down_proj.weight", {64, 16}, {64, 32}},
      {"model.embed_tokens.weight", {256, 64}, {512, 64}},  // vocab-parallel: half the rows
      {"lm_head.weight", {256, 64}, {512, 64}},
  };
  std::vector<int64_t> asked;
  WeightLoader full = [&asked](const std::string&, const std::vector<int64_t>& shape) -> Result<Tensor> {
    asked = shape;
    return Tensor::zeros(DType::f32, shape);
  };
  const WeightLoader rank1 = tensor_parallel_loader(full, 1, 2, 512);
  for (const Case& c : cases) {
    auto tensor = rank1(c.name, c.local);
    ASSERT_TRUE(tensor.ok()) << c.name << ": " << tensor.error().message;
    EXPECT_EQ(asked, c.asked) << c.name;
    EXPECT_EQ(tensor->shape(), c.local) << c.name;
  }
}

TEST(DeepseekTensorParallel, ARankLoadsOnlyItsLocalExperts) {
  const std::string dir = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/deepseek-v3-tiny";
  auto full = ModelConfig::load(dir);
  ASSERT_TRUE(full.ok());
  auto store = WeightStore::open(dir);
  ASSERT_TRUE(store.ok());
  const int64_t num_moe_layers = full->num_hidden_layers - full->moe.first_k_dense_replace;
  CpuBackend backend(1);
  std::set<int> experts_seen;
  for (int64_t rank : {0, 1}) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    auto local = tensor_parallel_config(full.value(), 2, rank);
    ASSERT_TRUE(local.ok());
    std::set<int> experts;
    int64_t num_expert_tensors = 0;
    const WeightLoader store_loader = weight_store_loader(store.value(), full->quantization);
    WeightLoader counting = [&](const std::string& name, const std::vector<int64_t>& shape) {
      const size_t at = name.find(".mlp.experts.");
      if (at != std::string::npos) {
        ++num_expert_tensors;
        experts.insert(std::stoi(name.substr(at + 13)));
      }
      return store_loader(name, shape);
    };
    auto model = load_model(local.value(), tensor_parallel_loader(counting, rank, 2, full->vocab_size), backend, LayerRange{});
    ASSERT_TRUE(model.ok()) << model.error().message;
    EXPECT_EQ(experts, (std::set<int>{int(4 * rank), int(4 * rank + 1), int(4 * rank + 2), int(4 * rank + 3)}));
    EXPECT_EQ(num_expert_tensors, num_moe_layers * 4 * 3);  // 4 experts x gate / up / down per MoE layer
    experts_seen.insert(experts.begin(), experts.end());
  }
  EXPECT_EQ(experts_seen.size(), 8u);
}

}  // namespace
}  // namespace troupe
