// --load-format dummy: random weights from config.json alone, deterministic, usable for a forward.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

#include "backends/cpu_backend.hpp"
#include "runtime/config.hpp"
#include "models/dummy_weights.hpp"
#include "backends/build_engine.hpp"
#include "engine/llm_engine.hpp"
#include "runtime/model_config.hpp"
#include "models/model_loader.hpp"

namespace troupe {
namespace {

const std::string kTinyDir = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";

// Last-token logits of a 5-token prompt through a fresh dummy load of llama-tiny.
std::vector<float> dummy_logits(CpuBackend& backend) {
  auto model = load_model_with_format(kTinyDir, "dummy", backend);
  EXPECT_TRUE(model.ok()) << (model.ok() ? "" : model.error().message);
  if (!model.ok()) return {};
  const int64_t block_size = 4;
  auto cache = backend.create_kv_cache(model.value()->kv_cache_spec(2, block_size));
  EXPECT_TRUE(cache.ok());
  std::vector<int32_t> table = {0, 1};
  ForwardBatch batch;
  batch.token_ids = {3, 17, 250, 9, 511};
  batch.positions = {0, 1, 2, 3, 4};
  batch.seqs.push_back({5, 5, &table, true});
  auto logits = model.value()->forward(batch, cache.value(), LogitsMode::last_token);
  EXPECT_TRUE(logits.ok()) << (logits.ok() ? "" : logits.error().message);
  if (!logits.ok()) return {};
  return backend.to_host(logits.value()).to_f32_vector();
}

TEST(DummyWeights, TinyLlamaForwardGivesFiniteLogitsAndRepeats) {
  CpuBackend backend(1);
  const std::vector<float> first = dummy_logits(backend);
  ASSERT_EQ(first.size(), 512u);  // vocab_size of the fixture's config.json
  float spread = 0;
  for (float v : first) {
    ASSERT_TRUE(std::isfinite(v));
    spread = std::max(spread, std::fabs(v - first[0]));
  }
  EXPECT_GT(spread, 0.0f);  // not a constant row: the weights are not all equal
  const std::vector<float> second = dummy_logits(backend);
  ASSERT_EQ(second.size(), first.size());
  for (size_t i = 0; i < first.size(); ++i) ASSERT_EQ(first[i], second[i]) << "logit " << i;
}

TEST(DummyWeights, LoaderIsDeterministicAcrossThreadCountsAndInRange) {
  const std::vector<int64_t> shape = {300, 7000};  // 2.1 M values: several fill threads
  auto one = dummy_weight_loader({0, 0.02f, 1})("model.layers.0.mlp.up_proj.weight", shape);
  auto many = dummy_weight_loader({0, 0.02f, 8})("model.layers.0.mlp.up_proj.weight", shape);
  auto other = dummy_weight_loader({0, 0.02f, 8})("model.layers.1.mlp.up_proj.weight", shape);
  ASSERT_TRUE(one.ok() && many.ok() && other.ok());
  ASSERT_EQ(one->shape(), shape);
  const float* a = one->data<float>();
  const float* b = many->data<float>();
  const float* c = other->data<float>();
  double sum = 0;
  int64_t same_as_other = 0;
  for (int64_t i = 0; i < one->numel(); ++i) {
    ASSERT_EQ(a[i], b[i]) << "index " << i;
    ASSERT_LE(std::fabs(a[i]), 0.02f);
    sum += a[i];
    same_as_other += a[i] == c[i];
  }
  // Uniform on [-0.02, 0.02]: std 0.0115, so the mean of 2.1 M values is within 5e-5 (> 6 sigma).
  EXPECT_LT(std::fabs(sum / double(one->numel())), 5e-5);
  EXPECT_LT(same_as_other, one->numel() / 1000);  // another name gives other values
}

TEST(DummyWeights, NormWeightsAreNearOne) {
  auto norm = dummy_weight_loader()("model.layers.3.input_layernorm.weight", {4096});
  ASSERT_TRUE(norm.ok());
  for (float v : norm->to_f32_vector()) {
    ASSERT_GE(v, 0.98f);
    ASSERT_LE(v, 1.02f);
  }
}

TEST(DummyWeights, BadFormatAndMissingConfigAreErrors) {
  CpuBackend backend(1);
  auto bad = load_model_with_format(kTinyDir, "pt", backend);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("pt"), std::string::npos);
  auto missing = load_model_with_format(kTinyDir + "/no-such-dir", "dummy", backend);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("config.json"), std::string::npos);
}

TEST(DummyWeights, EngineLoadsAFolderWithOnlyConfigJson) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("troupe-dummy-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(fs::path(kTinyDir) / "config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  Config config;
  config.model = dir.string();
  config.num_threads = 1;
  config.num_kv_blocks = 8;
  config.block_size = 4;
  config.load_format = "auto";
  EXPECT_FALSE(backends::build_engine(config).ok());  // no safetensors in the folder
  config.load_format = "dummy";
  auto engine = backends::build_engine(config);
  EXPECT_TRUE(engine.ok()) << (engine.ok() ? "" : engine.error().message);
  fs::remove_all(dir);
}

// The benchmark's config-only model folders parse to the published shapes of the two models.
TEST(DummyWeights, BenchModelConfigsParse) {
  const std::string root = std::string(TROUPE_SOURCE_DIR) + "/bench/models/";
  auto llama = ModelConfig::load(root + "llama3-8b");
  ASSERT_TRUE(llama.ok()) << (llama.ok() ? "" : llama.error().message);
  EXPECT_EQ(llama->architecture, "LlamaForCausalLM");
  EXPECT_EQ(llama->hidden_size, 4096);
  EXPECT_EQ(llama->intermediate_size, 14336);
  EXPECT_EQ(llama->num_hidden_layers, 32);
  EXPECT_EQ(llama->num_key_value_heads, 8);
  EXPECT_EQ(llama->head_dim, 128);
  EXPECT_EQ(llama->vocab_size, 128256);
  EXPECT_EQ(llama->rope_scaling.type, "llama3");
  EXPECT_EQ(llama->rope_scaling.factor, 8.0);
  EXPECT_FALSE(llama->tie_word_embeddings);
  auto qwen = ModelConfig::load(root + "qwen2.5-7b");
  ASSERT_TRUE(qwen.ok()) << (qwen.ok() ? "" : qwen.error().message);
  EXPECT_EQ(qwen->architecture, "Qwen2ForCausalLM");
  EXPECT_EQ(qwen->head_dim, 3584 / 28);
  EXPECT_EQ(qwen->num_key_value_heads, 4);
  EXPECT_EQ(qwen->vocab_size, 152064);
  EXPECT_EQ(qwen->rope_theta, 1e6);
  EXPECT_FALSE(qwen->tie_word_embeddings);
}

}  // namespace
}  // namespace troupe
