// FP8 block weights kept as FP8 (Fp8Weights::keep, Tensor::block_scale): the loader hands them over
// with their scales, load_weight / load_fused_weight keep them for a backend that keeps FP8 (fusing
// the scale rows on 128-row boundaries) and dequantize them for one that does not, and a whole
// FP8 checkpoint loaded either way gives the same logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>

#include "backends/cpu_backend.hpp"
#include "engine/model_runner.hpp"
#include "models/attention.hpp"
#include "models/dummy_weights.hpp"
#include "models/llama_model.hpp"
#include "models/model_loader.hpp"
#include "runtime/fp8_block.hpp"
#include "runtime/model_config.hpp"
#include "runtime/weight_store.hpp"

namespace troupe {
namespace {

const std::string kFp8Fixture = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/deepseek-v3-fp8-tiny";

// The CPU backend, but keeping FP8 weights: upload_weight stores them as they come and linear
// dequantizes them per call (the contract a GPU backend keeps with FP8 kernels).
class Fp8KeepingBackend final : public Backend {
 public:
  Fp8KeepingBackend() : cpu_(1) {}
  Device device() const override { return Device::cpu; }
  std::string name() const override { return "cpu-fp8"; }
  bool keeps_fp8_weights() const override { return true; }
  bool supports_mla_moe() const override { return true; }
  int64_t num_fp8_uploads = 0;
  int64_t num_fp8_products = 0;
  std::vector<bool> fp8_decode_calls;  // prefer_fp8_decode's arguments, in order

  void prefer_fp8_decode(bool on) override { fp8_decode_calls.push_back(on); }

  Result<Tensor> upload_weight(const Tensor& host) override {
    if (host.has_block_scale()) {
      ++num_fp8_uploads;
      return host;
    }
    return cpu_.upload_weight(host);
  }
  void linear(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor out) override {
    if (!weight.has_block_scale()) return cpu_.linear(x, weight, bias, out);
    ++num_fp8_products;
    cpu_.linear(x, dequantize_fp8_block(weight, "w").value(), bias, out);
  }
  Tensor empty(DType dtype, std::vector<int64_t> shape) override { return cpu_.empty(dtype, std::move(shape)); }
  Result<KvCache> create_kv_cache(const KvCacheSpec& spec) override { return cpu_.create_kv_cache(spec); }
  Tensor to_host(const Tensor& t) override { return cpu_.to_host(t); }
  void embedding(const Tensor& ids, const Tensor& table, Tensor out) override { cpu_.embedding(ids, table, out); }
  void rmsnorm(const Tensor& x, const Tensor& w, float eps, Tensor out) override { cpu_.rmsnorm(x, w, eps, out); }
  void add_rmsnorm(Tensor r, const Tensor& x, const Tensor& w, float eps, Tensor out) override {
    cpu_.add_rmsnorm(r, x, w, eps, out);
  }
  void rope(Tensor q, Tensor k, const Tensor& p, const Tensor& f) override { cpu_.rope(q, k, p, f); }
  void write_kv(Tensor c, const Tensor& x, const Tensor& s) override { cpu_.write_kv(c, x, s); }
  void paged_attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionMetadata& m, float s,
                       Tensor out) override {
    cpu_.paged_attention(q, k, v, m, s, out);
  }
  void silu_and_mul(const Tensor& g, const Tensor& u, Tensor out) override { cpu_.silu_and_mul(g, u, out); }
  void rope_interleaved(Tensor x, const Tensor& p, const Tensor& f, float s) override {
    cpu_.rope_interleaved(x, p, f, s);
  }
  void mla_write_latent(const Tensor& kv_a, const Tensor& w, float eps, const Tensor& p, const Tensor& f, float s,
                        const Tensor& slots, Tensor cache) override {
    cpu_.mla_write_latent(kv_a, w, eps, p, f, s, slots, cache);
  }
  void mla_paged_attention(const Tensor& q, const Tensor& cache, const Tensor& kv_b, const AttentionMetadata& m,
                           float s, Tensor out) override {
    cpu_.mla_paged_attention(q, cache, kv_b, m, s, out);
  }
  void add_rows_scaled(const Tensor& x, const std::vector<int32_t>& rows, const std::vector<float>& w,
                       Tensor out) override {
    cpu_.add_rows_scaled(x, rows, w, out);
  }
  void copy(const Tensor& src, Tensor dst) override { cpu_.copy(src, dst); }
  void add(const Tensor& a, const Tensor& b, Tensor out) override { cpu_.add(a, b, out); }
  void gather_rows(const Tensor& x, const std::vector<int32_t>& rows, Tensor out) override {
    cpu_.gather_rows(x, rows, out);
  }
  std::vector<int32_t> argmax(const Tensor& logits) override { return cpu_.argmax(logits); }

 private:
  CpuBackend cpu_;
};

// A host FP8 weight [rows, cols] with distinct per-block scales.
Tensor fp8_weight(int64_t rows, int64_t cols, float first_scale) {
  Tensor w = Tensor::empty(DType::f8_e4m3, {rows, cols});
  for (int64_t i = 0; i < rows * cols; ++i) w.data<uint8_t>()[i] = uint8_t(0x30 + (i * 7) % 40);
  const auto shape = fp8_scale_shape({rows, cols}, 128, 128);
  Tensor s = Tensor::empty(DType::f32, shape);
  for (int64_t i = 0; i < shape[0] * shape[1]; ++i) s.data<float>()[i] = first_scale + float(i);
  w.set_block_scale(std::move(s));
  return w;
}

WeightLoader loader_of(std::map<std::string, Tensor> tensors) {
  return [tensors](const std::string& name, const std::vector<int64_t>&) -> Result<Tensor> {
    return tensors.at(name);
  };
}

TEST(Fp8Weights, TheStoreLoaderKeepsThemWithTheirScale) {
  auto config = ModelConfig::load(kFp8Fixture);
  ASSERT_TRUE(config.ok()) << config.error().message;
  auto store = WeightStore::open(kFp8Fixture);
  ASSERT_TRUE(store.ok()) << store.error().message;
  const std::string name = "model.layers.0.self_attn.o_proj.weight";
  const std::vector<int64_t> shape = {config->hidden_size, config->num_attention_heads * config->mla.v_head_dim};
  auto kept = weight_store_loader(store.value(), config->quantization, Fp8Weights::keep)(name, shape);
  ASSERT_TRUE(kept.ok()) << kept.error().message;
  EXPECT_EQ(kept->dtype(), DType::f8_e4m3);
  ASSERT_TRUE(kept->has_block_scale());
  EXPECT_EQ(kept->block_scale().shape(), fp8_scale_shape(shape, 128, 128));
  auto dequantized = weight_store_loader(store.value(), config->quantization)(name, shape);
  ASSERT_TRUE(dequantized.ok());
  auto widened = dequantize_fp8_block(kept.value(), name);
  ASSERT_TRUE(widened.ok()) << widened.error().message;
  EXPECT_EQ(std::memcmp(widened->raw(), dequantized->raw(), dequantized->nbytes()), 0);
  EXPECT_TRUE(kept->reshape({-1}).has_block_scale());
  EXPECT_FALSE(kept->rows(0, 1).has_block_scale()) << "a row slice no longer lines up with its blocks";
}

TEST(Fp8Weights, FusedPartsKeepFp8OnBlockBoundariesAndDequantizeOtherwise) {
  Fp8KeepingBackend keeping;
  CpuBackend cpu(1);
  const Tensor a = fp8_weight(256, 200, 1.0f), b = fp8_weight(100, 200, 10.0f), c = fp8_weight(130, 200, 20.0f);
  const WeightLoader weights = loader_of({{"a", a}, {"b", b}, {"c", c}});

  auto fused = load_fused_weight(weights, keeping, {{"a", {256, 200}}, {"b", {100, 200}}});
  ASSERT_TRUE(fused.ok()) << fused.error().message;
  ASSERT_EQ(fused->dtype(), DType::f8_e4m3);
  ASSERT_TRUE(fused->has_block_scale());
  ASSERT_EQ(fused->block_scale().shape(), (std::vector<int64_t>{3, 2}));  // a's 2 block rows, then b's 1
  EXPECT_EQ(fused->block_scale().data<float>()[4], 10.0f);
  auto expected = load_fused_weight(weights, cpu, {{"a", {256, 200}}, {"b", {100, 200}}});
  ASSERT_TRUE(expected.ok());
  auto widened = dequantize_fp8_block(fused.value(), "a+b");
  ASSERT_TRUE(widened.ok()) << widened.error().message;
  EXPECT_EQ(std::memcmp(widened->raw(), expected->raw(), expected->nbytes()), 0);

  // c after b: b's 100 rows end inside a block, so the pair is dequantized (exactly).
  auto mixed = load_fused_weight(weights, keeping, {{"b", {100, 200}}, {"c", {130, 200}}});
  ASSERT_TRUE(mixed.ok()) << mixed.error().message;
  EXPECT_EQ(mixed->dtype(), DType::f32);
  EXPECT_FALSE(mixed->has_block_scale());
  // And a backend that does not keep FP8 never sees it.
  auto single = load_weight(weights, cpu, "a", {256, 200});
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(single->dtype(), DType::f32);
}

TEST(Fp8Weights, AnFp8CheckpointGivesTheSameLogitsKeptOrDequantized) {
  Fp8KeepingBackend keeping;
  CpuBackend cpu(1);
  auto kept = load_model(kFp8Fixture, keeping, LayerRange{});
  ASSERT_TRUE(kept.ok()) << kept.error().message;
  auto plain = load_model(kFp8Fixture, cpu, LayerRange{});
  ASSERT_TRUE(plain.ok()) << plain.error().message;
  EXPECT_GT(keeping.num_fp8_uploads, 0);
  const std::vector<int32_t> prompt = {5, 17, 300, 42, 9};
  auto a = greedy_generate(*kept.value(), keeping, prompt, 4, 16, true);
  auto b = greedy_generate(*plain.value(), cpu, prompt, 4, 16, true);
  ASSERT_TRUE(a.ok()) << a.error().message;
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_GT(keeping.num_fp8_products, 0);
  EXPECT_EQ(a->tokens, b->tokens);
  EXPECT_EQ(a->prompt_logits, b->prompt_logits);  // the same dequantized values in the same products
}

// A dense model tells the backend whether its linear layers run on kept FP8 weights (CUDA then gives
// the decode kernels one shared-memory carveout); DeepSeek's model does not ask.
TEST(Fp8Weights, AModelSaysWhetherItsDecodeRunsOnFp8Weights) {
  auto config = ModelConfig::load(std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny");
  ASSERT_TRUE(config.ok()) << config.error().message;
  Fp8KeepingBackend keeping;
  DummyWeightOptions fp8;
  fp8.fp8_blocks = true;
  ModelConfig quantized = config.value();
  quantized.quantization.method = "fp8";
  ASSERT_TRUE(LlamaModel::load(quantized, keeping, LayerRange{}, dummy_weight_loader(fp8)).ok());
  EXPECT_GT(keeping.num_fp8_uploads, 0);
  ASSERT_TRUE(LlamaModel::load(config.value(), keeping, LayerRange{}, dummy_weight_loader()).ok());
  EXPECT_EQ(keeping.fp8_decode_calls, (std::vector<bool>{true, false}));
  CpuBackend cpu(1);  // keeps no FP8: an FP8 checkpoint is dequantized at load, so the answer is no
  ASSERT_TRUE(LlamaModel::load(quantized, cpu, LayerRange{}, dummy_weight_loader(fp8)).ok());
  ASSERT_TRUE(load_model(kFp8Fixture, keeping, LayerRange{}).ok());
  EXPECT_EQ(keeping.fp8_decode_calls, (std::vector<bool>{true, false, true})) << "DeepseekModel, FP8 kept";
  ASSERT_TRUE(load_model(kFp8Fixture, cpu, LayerRange{}).ok());  // dequantized at load: nothing asked of it
}

TEST(Fp8Weights, DummyFp8ProjectionsCarryBlockScales) {
  DummyWeightOptions options;
  options.fp8_blocks = true;
  const WeightLoader dummy = dummy_weight_loader(options);
  auto proj = dummy("model.layers.0.mlp.experts.3.down_proj.weight", {300, 260});
  ASSERT_TRUE(proj.ok());
  EXPECT_EQ(proj->dtype(), DType::f8_e4m3);
  ASSERT_TRUE(proj->has_block_scale());
  EXPECT_EQ(proj->block_scale().shape(), (std::vector<int64_t>{3, 3}));
  auto widened = dequantize_fp8_block(proj.value(), "down");
  ASSERT_TRUE(widened.ok());
  float max_abs = 0.0f;
  for (float v : widened->to_f32_vector()) max_abs = std::max(max_abs, std::abs(v));
  EXPECT_GT(max_abs, 0.0f);
  EXPECT_LE(max_abs, 2.0f * options.scale);
  for (const char* name : {"model.embed_tokens.weight", "lm_head.weight", "model.layers.1.mlp.gate.weight"}) {
    auto t = dummy(name, {64, 32});
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->dtype(), DType::f32) << name;
  }
}

}  // namespace
}  // namespace troupe
