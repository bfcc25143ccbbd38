// StageReader: a stage's tensors read ahead in the order models ask for them, q/k/v and gate/up
// read back to back into one buffer that load_fused_weight uploads as is, and a checkpoint cut
// short after it was opened fails the load with the tensor and file named (no hang).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "backends/cpu_backend.hpp"
#include "models/attention.hpp"
#include "models/model_loader.hpp"
#include "models/stage_reader.hpp"
#include "runtime/model_config.hpp"
#include "runtime/weight_store.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;

const std::string kQwen2Tiny = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/qwen2-tiny";
const std::string kFp8Tiny = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/deepseek-v3-fp8-tiny";

TEST(StageReaderOrder, LayersInNumberOrderNormsAttentionRouterThenExperts) {
  EXPECT_TRUE(natural_less("mlp.experts.2.up", "mlp.experts.10.down"));
  EXPECT_FALSE(natural_less("mlp.experts.10.down", "mlp.experts.2.up"));
  EXPECT_TRUE(natural_less("a.07", "a.8"));
  EXPECT_TRUE(natural_less("a.1", "a.1.x"));
  EXPECT_FALSE(natural_less("same", "same"));
  std::vector<std::string> names = {"lm_head.weight",
                                    "model.norm.weight",
                                    "model.layers.10.input_layernorm.weight",
                                    "model.layers.2.mlp.experts.0.down_proj.weight",
                                    "model.layers.2.mlp.gate.weight",
                                    "model.layers.2.post_attention_layernorm.weight",
                                    "model.layers.2.self_attn.q_proj.weight",
                                    "model.layers.2.input_layernorm.weight",
                                    "model.embed_tokens.weight"};
  std::stable_sort(names.begin(), names.end(),
                   [](const std::string& a, const std::string& b) { return load_order_key(a) < load_order_key(b); });
  const std::vector<std::string> expected = {"model.embed_tokens.weight",
                                             "model.layers.2.input_layernorm.weight",
                                             "model.layers.2.self_attn.q_proj.weight",
                                             "model.layers.2.post_attention_layernorm.weight",
                                             "model.layers.2.mlp.gate.weight",
                                             "model.layers.2.mlp.experts.0.down_proj.weight",
                                             "model.layers.10.input_layernorm.weight",
                                             "lm_head.weight",
                                             "model.norm.weight"};
  EXPECT_EQ(names, expected);
}

// Every tensor of the checkpoint, read through a StageReader with small chunks and a small budget,
// holds the bytes read_into gives; q/k/v and gate/up come back to back in one buffer.
TEST(StageReader, ReadsEveryTensorsBytesAndFusedPartsBackToBack) {
  auto store = WeightStore::open(kQwen2Tiny);
  ASSERT_TRUE(store.ok()) << store.error().message;
  StageReader reader(store.value(), [](const std::string&) { return true; },
                     {.num_threads = 3, .chunk_bytes = 4096, .budget_bytes = 64 << 10});
  uint64_t total = 0;
  for (const std::string& name : store->names()) total += store->get(name)->nbytes;
  EXPECT_EQ(reader.total_bytes(), total);
  const std::string p = "model.layers.1.self_attn.";
  std::vector<Tensor> qkv;
  for (const char* part : {"q_proj.weight", "k_proj.weight", "v_proj.weight"}) {
    auto t = reader.read(store->get(p + part).value());
    ASSERT_TRUE(t.ok()) << t.error().message;
    qkv.push_back(t.value());
  }
  EXPECT_TRUE(qkv[0].is_followed_by(qkv[1]));
  EXPECT_TRUE(qkv[1].is_followed_by(qkv[2]));
  const std::string m = "model.layers.0.mlp.";
  auto gate = reader.read(store->get(m + "gate_proj.weight").value());
  auto up = reader.read(store->get(m + "up_proj.weight").value());
  ASSERT_TRUE(gate.ok() && up.ok());
  EXPECT_TRUE(gate->is_followed_by(up.value()));
  std::vector<std::string> names = store->names();
  names.push_back(p + "q_proj.weight");  // asked twice: read again from the file
  for (const std::string& name : names) {
    const TensorView view = store->get(name).value();
    auto got = reader.read(view);
    ASSERT_TRUE(got.ok()) << name << ": " << got.error().message;
    ASSERT_EQ(got->shape(), view.shape) << name;
    std::vector<uint8_t> expected(view.nbytes);
    ASSERT_TRUE(store->read_into(view, expected.data()).ok());
    EXPECT_EQ(std::memcmp(got->raw(), expected.data(), view.nbytes), 0) << name << ": bytes differ";
  }
  // The first reads above are compared too: the fused parts hold the files' bytes.
  for (size_t i = 0; i < 3; ++i) {
    const TensorView view = store->get(p + std::vector<std::string>{"q_proj.weight", "k_proj.weight", "v_proj.weight"}[i]).value();
    std::vector<uint8_t> expected(view.nbytes);
    ASSERT_TRUE(store->read_into(view, expected.data()).ok());
    EXPECT_EQ(std::memcmp(qkv[i].raw(), expected.data(), view.nbytes), 0) << view.name;
  }
}

// load_fused_weight over the read-ahead gives the same fused weight as over plain reads (the
// buffer read back to back, uploaded without a copy), biases included.
TEST(StageReader, FusedWeightsMatchThePlainLoader) {
  auto config = ModelConfig::load(kQwen2Tiny);
  auto store = WeightStore::open(kQwen2Tiny);
  ASSERT_TRUE(config.ok() && store.ok());
  StageReader reader(store.value(), [](const std::string&) { return true; });
  const WeightLoader ahead = weight_store_loader(store.value(), config->quantization, Fp8Weights::dequantize,
                                                 [&reader](const TensorView& v) { return reader.read(v); });
  const WeightLoader plain = weight_store_loader(store.value(), config->quantization);
  CpuBackend backend(2);
  const std::string p = "model.layers.2.self_attn.";
  for (const char* kind : {"weight", "bias"}) {
    std::vector<WeightPart> parts;
    for (const char* proj : {"q_proj.", "k_proj.", "v_proj."}) {
      const std::string name = p + proj + kind;
      parts.push_back({name, store->get(name)->shape});
    }
    auto a = load_fused_weight(ahead, backend, parts);
    auto b = load_fused_weight(plain, backend, parts);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->shape(), b->shape());
    EXPECT_EQ(a->to_f32_vector(), b->to_f32_vector()) << kind;
  }
}

// The FP8 fixture (weights + block scales) loads through the read-ahead as through plain reads.
TEST(StageReader, Fp8WeightsAndScalesMatchThePlainLoader) {
  auto config = ModelConfig::load(kFp8Tiny);
  auto store = WeightStore::open(kFp8Tiny);
  ASSERT_TRUE(config.ok() && store.ok());
  for (Fp8Weights mode : {Fp8Weights::keep, Fp8Weights::dequantize}) {
    StageReader fresh(store.value(), [](const std::string&) { return true; }, {.chunk_bytes = 4096});
    const WeightLoader ahead = weight_store_loader(store.value(), config->quantization, mode,
                                                   [&fresh](const TensorView& v) { return fresh.read(v); });
    const WeightLoader plain = weight_store_loader(store.value(), config->quantization, mode);
    int fp8 = 0;
    for (const std::string& name : store->names()) {
      const TensorView view = store->get(name).value();
      if (view.dtype != DType::f8_e4m3) continue;
      auto a = ahead(name, view.shape);
      auto b = plain(name, view.shape);
      ASSERT_TRUE(a.ok()) << name << ": " << a.error().message;
      ASSERT_TRUE(b.ok()) << name << ": " << b.error().message;
      ASSERT_EQ(a->dtype(), b->dtype());
      ASSERT_EQ(a->nbytes(), b->nbytes());
      EXPECT_EQ(std::memcmp(a->raw(), b->raw(), a->nbytes()), 0) << name;
      ASSERT_EQ(a->has_block_scale(), b->has_block_scale()) << name;
      if (a->has_block_scale()) EXPECT_EQ(a->block_scale().to_f32_vector(), b->block_scale().to_f32_vector()) << name;
      ++fp8;
    }
    EXPECT_GT(fp8, 0) << "the fixture has FP8 weights";
  }
}

TEST(StageReader, ACheckpointCutShortAfterOpeningFailsTheLoadNamingTensorAndFile) {
  const fs::path dir = fs::temp_directory_path() / ("troupe_stage_reader_cut_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors"}) fs::copy_file(fs::path(kQwen2Tiny) / f, dir / f);
  auto config = ModelConfig::load(dir.string());
  auto store = WeightStore::open(dir.string());
  ASSERT_TRUE(config.ok() && store.ok());
  const std::string file = (dir / "model.safetensors").string();
  fs::resize_file(file, fs::file_size(file) / 2);  // layers 1 and 2 are gone
  CpuBackend backend(2);
  auto model = load_model(config.value(), store.value(), backend);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.error().code, ErrorCode::corrupt_data);
  EXPECT_NE(model.error().message.find("the file ends early"), std::string::npos) << model.error().message;
  EXPECT_NE(model.error().message.find(file), std::string::npos) << model.error().message;
  EXPECT_NE(model.error().message.find("model.layers."), std::string::npos) << model.error().message;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace troupe
