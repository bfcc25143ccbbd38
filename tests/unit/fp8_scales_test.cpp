// FP8 checkpoints with per-tensor and per-channel weight scales (AutoFP8, compressed-tensors,
// fbgemm_fp8): config.json's quantization_config read into one layout, weights dequantized exactly
// (or kept FP8 in the 128x128 block form), bad scales refused naming both tensors, and a whole
// model quantized both ways answering with the same logits, bit for bit, as an fp32 checkpoint of
// the same dequantized values.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backends/cpu_backend.hpp"
#include "engine/model_runner.hpp"
#include "kernels/host_fp8.hpp"
#include "models/model_loader.hpp"
#include "runtime/dtype.hpp"
#include "runtime/fp8_scales.hpp"
#include "runtime/model_config.hpp"
#include "runtime/safetensors_writer.hpp"
#include "runtime/weight_store.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;

class Fp8ScalesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("troupe_fp8s_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // config.json of a tiny Llama with `quant` as its quantization_config; the parse result.
  Result<ModelConfig> parse(const nlohmann::json& quant, const fs::path& where) {
    std::ifstream in(std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny/config.json");
    nlohmann::json config = nlohmann::json::parse(in);
    config["quantization_config"] = quant;
    fs::create_directories(where);
    std::ofstream(where / "config.json") << config.dump(2);
    return ModelConfig::load(where.string());
  }

  fs::path dir_;
};

NamedTensor fp8_tensor(const std::string& name, std::vector<int64_t> shape, std::vector<uint8_t> bits) {
  NamedTensor t;
  t.name = name;
  t.dtype = DType::f8_e4m3;
  t.shape = std::move(shape);
  t.bytes = std::move(bits);
  return t;
}

std::vector<uint8_t> pattern(int64_t rows, int64_t cols) {
  std::vector<uint8_t> bits(size_t(rows * cols));
  for (size_t i = 0; i < bits.size(); ++i) bits[i] = uint8_t((i * 37) % 120) | ((i % 3 == 0) ? 0x80u : 0u);
  return bits;
}

nlohmann::json compressed_tensors(const std::string& strategy, const std::string& type = "float", int bits = 8) {
  return {{"quant_method", "compressed-tensors"},
          {"format", "float-quantized"},
          {"config_groups",
           {{"group_0",
             {{"targets", {"Linear"}},
              {"weights", {{"num_bits", bits}, {"type", type}, {"strategy", strategy}, {"symmetric", true}}}}}}},
          {"ignore", {"lm_head"}}};
}

TEST_F(Fp8ScalesTest, EachFormatReadsIntoOneLayoutAndOthersAreRefusedByName) {
  struct Case {
    nlohmann::json quant;
    std::string weight_scale;  // "" : refused
    std::string words;         // in the error
  };
  const std::vector<Case> cases = {
      {{{"quant_method", "fp8"}, {"activation_scheme", "static"}, {"ignored_layers", {"lm_head"}}}, "tensor", ""},
      {{{"quant_method", "fp8"}, {"activation_scheme", "dynamic"}}, "tensor", ""},
      {{{"quant_method", "fp8"}, {"activation_scheme", "dynamic"}, {"fmt", "e4m3"}, {"weight_block_size", {128, 128}}},
       "block", ""},
      {{{"quant_method", "fbgemm_fp8"}, {"activation_scale_ub", 1200.0}}, "channel", ""},
      {compressed_tensors("tensor"), "tensor", ""},
      {compressed_tensors("channel"), "channel", ""},
      {compressed_tensors("channel", "int"), "", "8-bit float"},
      {compressed_tensors("group"), "", "strategy 'group'"},
      {{{"quant_method", "compressed-tensors"}}, "", "config_groups"},
      {{{"quant_method", "awq"}}, "", "'awq' is not supported"},
      {{{"quant_method", "fp8"}, {"activation_scheme", "per-head"}}, "", "activation_scheme"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    auto config = parse(cases[i].quant, dir_ / std::to_string(i));
    if (cases[i].weight_scale.empty()) {
      ASSERT_FALSE(config.ok()) << cases[i].quant.dump();
      EXPECT_NE(config.error().message.find(cases[i].words), std::string::npos) << config.error().message;
      EXPECT_NE(config.error().message.find("quantization_config"), std::string::npos) << config.error().message;
    } else {
      ASSERT_TRUE(config.ok()) << cases[i].quant.dump() << ": " << config.error().message;
      EXPECT_TRUE(config->quantization.is_fp8());
      EXPECT_EQ(config->quantization.weight_scale, cases[i].weight_scale) << cases[i].quant.dump();
    }
  }
}

TEST_F(Fp8ScalesTest, PerTensorAndPerChannelScalesDequantizeExactlyAndPerTensorStaysFp8) {
  const int64_t rows = 130, cols = 260;  // partial 128-blocks both ways
  const std::vector<uint8_t> bits = pattern(rows, cols);
  std::vector<float> channel(static_cast<size_t>(rows), 0.0f);
  for (int64_t r = 0; r < rows; ++r) channel[size_t(r)] = 0.001f * float(r + 1);
  ASSERT_TRUE(write_safetensors((dir_ / "model.safetensors").string(),
                                {fp8_tensor("t.weight", {rows, cols}, bits),
                                 make_named_tensor("t.weight_scale", DType::f32, {}, {0.375f}),
                                 fp8_tensor("c.weight", {rows, cols}, bits),
                                 make_named_tensor("c.weight_scale", DType::bf16, {rows, 1}, channel)})
                  .ok());
  auto store = WeightStore::open(dir_.string());
  ASSERT_TRUE(store.ok()) << store.error().message;
  QuantizationConfig tensor, chan;
  tensor.method = chan.method = "fp8";
  tensor.weight_scale = "tensor";
  chan.weight_scale = "channel";

  auto t = weight_store_loader(store.value(), tensor)("t.weight", {rows, cols});
  ASSERT_TRUE(t.ok()) << t.error().message;
  ASSERT_EQ(t->dtype(), DType::f32);
  auto c = weight_store_loader(store.value(), chan)("c.weight", {rows, cols});
  ASSERT_TRUE(c.ok()) << c.error().message;
  ASSERT_EQ(c->dtype(), DType::f32);
  for (int64_t r = 0; r < rows; ++r) {
    const float row_scale = bf16_to_f32(f32_to_bf16(channel[size_t(r)]));  // the scale as stored
    for (int64_t k = 0; k < cols; ++k) {
      const float v = f8_e4m3_to_f32(bits[size_t(r * cols + k)]);
      ASSERT_EQ(t->data<float>()[r * cols + k], v * 0.375f) << r << "," << k;
      ASSERT_EQ(c->data<float>()[r * cols + k], v * row_scale) << r << "," << k;
    }
  }
  // Kept FP8 (a backend with FP8 kernels): the bytes as stored, every block scale the one value.
  auto kept = weight_store_loader(store.value(), tensor, Fp8Weights::keep)("t.weight", {rows, cols});
  ASSERT_TRUE(kept.ok()) << kept.error().message;
  ASSERT_EQ(kept->dtype(), DType::f8_e4m3);
  ASSERT_TRUE(kept->has_block_scale());
  EXPECT_EQ(kept->block_scale().shape(), (std::vector<int64_t>{2, 3}));
  for (int64_t i = 0; i < 6; ++i) EXPECT_EQ(kept->block_scale().data<float>()[i], 0.375f);
  EXPECT_EQ(std::vector<uint8_t>(kept->data<uint8_t>(), kept->data<uint8_t>() + rows * cols), bits);
  // Per-channel never stays FP8 (no per-row kernel): fp32, served in the backend's weight dtype.
  auto chan_kept = weight_store_loader(store.value(), chan, Fp8Weights::keep)("c.weight", {rows, cols});
  ASSERT_TRUE(chan_kept.ok()) << chan_kept.error().message;
  EXPECT_EQ(chan_kept->dtype(), DType::f32);
}

TEST_F(Fp8ScalesTest, BadOrMissingScalesAreRefusedNamingBothTensors) {
  ASSERT_TRUE(write_safetensors((dir_ / "model.safetensors").string(),
                                {fp8_tensor("a.weight", {4, 8}, pattern(4, 8)),
                                 make_named_tensor("a.weight_scale", DType::f32, {2}, {1, 2}),
                                 fp8_tensor("b.weight", {4, 8}, pattern(4, 8)),
                                 make_named_tensor("b.weight_scale", DType::f32, {4, 2}, std::vector<float>(8, 1)),
                                 fp8_tensor("m.weight", {4, 8}, pattern(4, 8)),
                                 make_named_tensor("n.weight_scale", DType::f32, {1}, {NAN})})
                  .ok());
  auto store = WeightStore::open(dir_.string());
  ASSERT_TRUE(store.ok()) << store.error().message;
  QuantizationConfig tensor, chan;
  tensor.method = chan.method = "fp8";
  tensor.weight_scale = "tensor";
  chan.weight_scale = "channel";
  auto two = weight_store_loader(store.value(), tensor)("a.weight", {4, 8});
  ASSERT_FALSE(two.ok());
  for (const char* word : {"'a.weight_scale'", "[2]", "one F32 value", "'a.weight'"})
    EXPECT_NE(two.error().message.find(word), std::string::npos) << word << " not in: " << two.error().message;
  auto wide = weight_store_loader(store.value(), chan)("b.weight", {4, 8});
  ASSERT_FALSE(wide.ok());
  EXPECT_NE(wide.error().message.find("[4] or [4, 1]"), std::string::npos) << wide.error().message;
  auto missing = weight_store_loader(store.value(), tensor)("m.weight", {4, 8});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("without its 'm.weight_scale'"), std::string::npos) << missing.error().message;
}

// llama-tiny with its projections quantized to e4m3 (per tensor, then per channel) against an fp32
// checkpoint holding exactly the dequantized values: the same logits, bit for bit.
TEST_F(Fp8ScalesTest, AQuantizedModelAnswersAsTheFp32CheckpointOfItsValues) {
  const std::string tiny = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";
  auto source = WeightStore::open(tiny);
  ASSERT_TRUE(source.ok()) << source.error().message;
  for (const std::string strategy : {"tensor", "channel"}) {
    const fs::path quantized = dir_ / ("fp8_" + strategy), plain = dir_ / ("f32_" + strategy);
    ASSERT_TRUE(parse(compressed_tensors(strategy), quantized).ok());
    fs::create_directories(plain);
    fs::copy_file(fs::path(tiny) / "config.json", plain / "config.json");
    std::vector<NamedTensor> fp8_tensors, f32_tensors;
    int quantized_count = 0;
    for (const std::string& name : source->names()) {
      auto view = source->get(name);
      ASSERT_TRUE(view.ok());
      std::vector<float> values(size_t(view->numel()));
      ASSERT_TRUE(convert_to_f32(view->dtype, view->data, values.size(), values.data()));
      const bool projection = view->shape.size() == 2 && name.size() > 12 &&
                              name.compare(name.size() - 12, 12, "_proj.weight") == 0;
      if (!projection) {
        fp8_tensors.push_back(make_named_tensor(name, DType::f32, view->shape, values));
        f32_tensors.push_back(make_named_tensor(name, DType::f32, view->shape, values));
        continue;
      }
      ++quantized_count;
      const int64_t rows = view->shape[0], cols = view->shape[1];
      std::vector<float> scales(strategy == "tensor" ? 1 : size_t(rows), 0.0f);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < cols; ++k) {
          float& s = scales[strategy == "tensor" ? 0 : size_t(r)];
          s = std::max(s, std::fabs(values[size_t(r * cols + k)]) / 448.0f);
        }
      std::vector<uint8_t> bits(values.size());
      std::vector<float> dequantized(values.size());
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < cols; ++k) {
          const float s = scales[strategy == "tensor" ? 0 : size_t(r)];
          const size_t i = size_t(r * cols + k);
          bits[i] = kernels::host_f32_to_e4m3(values[i] / s);
          dequantized[i] = f8_e4m3_to_f32(bits[i]) * s;
        }
      fp8_tensors.push_back(fp8_tensor(name, view->shape, bits));
      fp8_tensors.push_back(make_named_tensor(fp8_weight_scale_name(name), DType::f32,
                                              strategy == "tensor" ? std::vector<int64_t>{1} : std::vector<int64_t>{rows, 1},
                                              scales));
      f32_tensors.push_back(make_named_tensor(name, DType::f32, view->shape, dequantized));
    }
    ASSERT_GT(quantized_count, 0);
    ASSERT_TRUE(write_safetensors((quantized / "model.safetensors").string(), fp8_tensors).ok());
    ASSERT_TRUE(write_safetensors((plain / "model.safetensors").string(), f32_tensors).ok());

    CpuBackend cpu(2);
    auto fp8_model = load_model(quantized.string(), cpu);
    ASSERT_TRUE(fp8_model.ok()) << fp8_model.error().message;
    auto f32_model = load_model(plain.string(), cpu);
    ASSERT_TRUE(f32_model.ok()) << f32_model.error().message;
    const std::vector<int32_t> prompt = {1, 17, 99, 250, 3, 42, 7};
    auto a = greedy_generate(*fp8_model.value(), cpu, prompt, 8, 16, true);
    auto b = greedy_generate(*f32_model.value(), cpu, prompt, 8, 16, true);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->tokens, b->tokens) << strategy;
    EXPECT_EQ(a->prompt_logits, b->prompt_logits) << strategy;
  }
}

}  // namespace
}  // namespace troupe
