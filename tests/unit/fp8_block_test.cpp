// FP8 block checkpoints: dequantization with partial edge blocks, and the bad cases (a scale of
// the wrong shape, a missing scale, FP8 without quantization_config, a truncated shard) refused in
// one line naming the tensor.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "models/model_loader.hpp"
#include "runtime/dtype.hpp"
#include "runtime/fp8_block.hpp"
#include "runtime/safetensors_writer.hpp"
#include "runtime/weight_store.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;

NamedTensor fp8_tensor(const std::string& name, std::vector<int64_t> shape, const std::vector<uint8_t>& bits) {
  NamedTensor t;
  t.name = name;
  t.dtype = DType::f8_e4m3;
  t.shape = std::move(shape);
  t.bytes = bits;
  return t;
}

// Bits i % 120 (finite e4m3 values of both signs, subnormals included) over [rows, cols].
std::vector<uint8_t> pattern(int64_t rows, int64_t cols) {
  std::vector<uint8_t> bits(size_t(rows * cols));
  for (size_t i = 0; i < bits.size(); ++i) bits[i] = uint8_t((i * 37) % 120) | ((i % 3 == 0) ? 0x80u : 0u);
  return bits;
}

class Fp8BlockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / ("troupe_fp8_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file() const { return (dir_ / "model.safetensors").string(); }

  fs::path dir_;
};

TEST_F(Fp8BlockTest, DequantizesPartialEdgeBlocksWithEachBlocksScale) {
  // [130, 260]: row blocks 128 + 2, column blocks 128 + 128 + 4.
  const int64_t rows = 130, cols = 260;
  const std::vector<uint8_t> bits = pattern(rows, cols);
  const std::vector<float> scales = {0.5f, 2.0f, -1.25f, 3.0f, 0.125f, 7.0f};  // [2, 3]
  ASSERT_TRUE(write_safetensors(file(), {fp8_tensor("w.weight", {rows, cols}, bits),
                                         make_named_tensor("w.weight_scale_inv", DType::f32, {2, 3}, scales)})
                  .ok());
  auto store = WeightStore::open(dir_.string());
  ASSERT_TRUE(store.ok()) << store.error().message;
  QuantizationConfig quant;
  quant.method = "fp8";
  auto loaded = weight_store_loader(store.value(), quant)("w.weight", {rows, cols});
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  ASSERT_EQ(loaded->dtype(), DType::f32);
  ASSERT_EQ(loaded->shape(), (std::vector<int64_t>{rows, cols}));
  const float* w = loaded->data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float expected = f8_e4m3_to_f32(bits[size_t(r * cols + c)]) * scales[size_t((r / 128) * 3 + c / 128)];
      ASSERT_EQ(w[r * cols + c], expected) << "at (" << r << ", " << c << ")";
    }
  }
  // Spot values by hand: bits 0x08 is 2^-6; row 129 col 259 lies in block (1, 2), scale 7.
  EXPECT_EQ(f8_e4m3_to_f32(0x08), std::ldexp(1.0f, -6));
  EXPECT_EQ(w[129 * cols + 259], f8_e4m3_to_f32(bits[size_t(129 * cols + 259)]) * 7.0f);
}

TEST_F(Fp8BlockTest, RefusesAScaleOfTheWrongShapeNamingBothTensors) {
  ASSERT_TRUE(write_safetensors(file(), {fp8_tensor("w.weight", {130, 260}, pattern(130, 260)),
                                         make_named_tensor("w.weight_scale_inv", DType::f32, {2, 2}, {1, 1, 1, 1})})
                  .ok());
  auto store = WeightStore::open(dir_.string());
  ASSERT_TRUE(store.ok()) << store.error().message;
  QuantizationConfig quant;
  quant.method = "fp8";
  auto loaded = weight_store_loader(store.value(), quant)("w.weight", {130, 260});
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.error().code, ErrorCode::corrupt_data);
  for (const char* word : {"'w.weight_scale_inv'", "[2, 2]", "expected F32 [2, 3]", "'w.weight'"})
    EXPECT_NE(loaded.error().message.find(word), std::string::npos) << word << " not in: " << loaded.error().message;
}

TEST_F(Fp8BlockTest, RefusesFp8WithoutScaleOrWithoutQuantizationConfig) {
  ASSERT_TRUE(write_safetensors(file(), {fp8_tensor("w.weight", {4, 4}, pattern(4, 4))}).ok());
  auto store = WeightStore::open(dir_.string());
  ASSERT_TRUE(store.ok()) << store.error().message;
  QuantizationConfig fp8;
  fp8.method = "fp8";
  auto no_scale = weight_store_loader(store.value(), fp8)("w.weight", {4, 4});
  ASSERT_FALSE(no_scale.ok());
  EXPECT_NE(no_scale.error().message.find("w.weight_scale_inv"), std::string::npos) << no_scale.error().message;
  auto no_config = weight_store_loader(store.value())("w.weight", {4, 4});
  ASSERT_FALSE(no_config.ok());
  EXPECT_NE(no_config.error().message.find("no fp8 quantization_config"), std::string::npos) << no_config.error().message;
}

TEST_F(Fp8BlockTest, ATruncatedFp8ShardIsRefusedNamingTheTensor) {
  ASSERT_TRUE(write_safetensors(file(), {fp8_tensor("w.weight", {128, 256}, pattern(128, 256)),
                                         make_named_tensor("w.weight_scale_inv", DType::f32, {1, 2}, {1, 1})})
                  .ok());
  fs::resize_file(file(), fs::file_size(file()) - 1000);  // cut inside the weight's bytes
  auto store = WeightStore::open(dir_.string());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.error().message.find('\n'), std::string::npos);
  EXPECT_NE(store.error().message.find("model.safetensors"), std::string::npos) << store.error().message;
}

TEST(Fp8Block, ScaleShapeRoundsUp) {
  EXPECT_EQ(fp8_scale_shape({7168, 18432}, 128, 128), (std::vector<int64_t>{56, 144}));
  EXPECT_EQ(fp8_scale_shape({576 + 1536, 7168}, 128, 128), (std::vector<int64_t>{17, 56}));  // partial rows
  EXPECT_EQ(fp8_scale_name("model.layers.3.mlp.experts.0.up_proj.weight"),
            "model.layers.3.mlp.experts.0.up_proj.weight_scale_inv");
}

}  // namespace
}  // namespace troupe
