#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/safetensors_writer.hpp"
#include "runtime/weight_store.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;

class WeightStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("troupe_weight_store_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  void write_text(const std::string& name, const std::string& text) const {
    std::ofstream(path(name)) << text;
  }
  void write_shards() const {
    ASSERT_TRUE(write_safetensors(path("model-00001-of-00002.safetensors"),
                                  {make_named_tensor("embed", DType::bf16, {4, 2}, {1, 2, 3, 4, 5, 6, 7, 8}),
                                   make_named_tensor("layers.0.w", DType::f32, {2}, {0.5f, -1.5f})})
                    .ok());
    ASSERT_TRUE(write_safetensors(path("model-00002-of-00002.safetensors"),
                                  {make_named_tensor("norm", DType::f16, {2}, {1.0f, 0.25f})})
                    .ok());
  }
  // open() must fail with `code` and a message holding each of `words`.
  void expect_open_error(ErrorCode code, const std::vector<std::string>& words) const {
    auto store = WeightStore::open(dir_.string());
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.error().code, code) << store.error().message;
    for (const auto& word : words) {
      EXPECT_NE(store.error().message.find(word), std::string::npos)
          << "'" << word << "' not in: " << store.error().message;
    }
  }

  static constexpr const char* kIndex = R"({"metadata": {"total_size": 28}, "weight_map": {
      "embed": "model-00001-of-00002.safetensors",
      "layers.0.w": "model-00001-of-00002.safetensors",
      "norm": "model-00002-of-00002.safetensors"}})";

  fs::path dir_;
};

TEST_F(WeightStoreTest, OpensSingleFileAndReadsEveryDtypeAsF32) {
  const std::vector<float> values = {1.0f, -2.0f, 0.5f, 3.25f, -0.125f, 0.0f};
  ASSERT_TRUE(write_safetensors(path("model.safetensors"),
                                {make_named_tensor("w.f32", DType::f32, {2, 3}, values),
                                 make_named_tensor("w.bf16", DType::bf16, {2, 3}, values),
                                 make_named_tensor("w.f16", DType::f16, {3, 2}, values),
                                 NamedTensor{"ids", DType::i32, {2}, std::vector<uint8_t>(8)}})
                  .ok());
  auto store = WeightStore::open(dir_.string());
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ(store->names(), (std::vector<std::string>{"ids", "w.bf16", "w.f16", "w.f32"}));
  EXPECT_TRUE(store->has("w.f16"));
  EXPECT_FALSE(store->has("w.f64"));
  for (const char* name : {"w.f32", "w.bf16", "w.f16"}) {
    auto read = store->read_f32(name);
    ASSERT_TRUE(read.ok()) << read.error().message;
    EXPECT_EQ(*read, values) << name;
  }
  auto view = store->get("w.bf16", {2, 3});
  ASSERT_TRUE(view.ok()) << view.error().message;
  EXPECT_EQ(view->file, path("model.safetensors"));
  EXPECT_EQ(view->nbytes, 12u);

  auto ints = store->read_f32("ids");
  ASSERT_FALSE(ints.ok());
  EXPECT_EQ(ints.error().code, ErrorCode::unsupported);
  EXPECT_NE(ints.error().message.find("'ids'"), std::string::npos);
  EXPECT_NE(ints.error().message.find("I32"), std::string::npos);
}

TEST_F(WeightStoreTest, WrongExpectedShapeNamesTensorFileAndBothShapes) {
  ASSERT_TRUE(write_safetensors(path("model.safetensors"),
                                {make_named_tensor("proj", DType::f32, {2, 3}, std::vector<float>(6, 1.0f))})
                  .ok());
  auto store = WeightStore::open(dir_.string());
  ASSERT_TRUE(store.ok()) << store.error().message;
  for (const auto& expected : std::vector<std::vector<int64_t>>{{3, 2}, {6}, {2, 3, 1}}) {
    auto view = store->get("proj", expected);
    ASSERT_FALSE(view.ok());
    EXPECT_EQ(view.error().code, ErrorCode::corrupt_data);
    const std::string& message = view.error().message;
    for (const std::string& word : {std::string("'proj'"), path("model.safetensors"), std::string("[2, 3]"),
                                    shape_to_string(expected)}) {
      EXPECT_NE(message.find(word), std::string::npos) << "'" << word << "' not in: " << message;
    }
    auto read = store->read_f32("proj", expected);
    ASSERT_FALSE(read.ok());
    EXPECT_EQ(read.error().code, ErrorCode::corrupt_data);
  }
  auto missing = store->get("nope");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::not_found);
  EXPECT_NE(missing.error().message.find("'nope'"), std::string::npos);
  EXPECT_NE(missing.error().message.find(dir_.string()), std::string::npos);
}

TEST_F(WeightStoreTest, OpensShardsListedByTheIndex) {
  write_shards();
  write_text("model.safetensors.index.json", kIndex);
  auto store = WeightStore::open(dir_.string());
  ASSERT_TRUE(store.ok()) << store.error().message;
  EXPECT_EQ(store->names(), (std::vector<std::string>{"embed", "layers.0.w", "norm"}));
  EXPECT_EQ(store->get("norm")->file, path("model-00002-of-00002.safetensors"));
  EXPECT_EQ(store->get("embed")->file, path("model-00001-of-00002.safetensors"));
  EXPECT_EQ(*store->read_f32("norm", {2}), (std::vector<float>{1.0f, 0.25f}));
  EXPECT_EQ(*store->read_f32("embed", {4, 2}), (std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8}));

  // Views stay valid after the store moves.
  WeightStore moved = std::move(store.value());
  EXPECT_EQ(*moved.read_f32("layers.0.w"), (std::vector<float>{0.5f, -1.5f}));
}

TEST_F(WeightStoreTest, MissingShard) {
  write_shards();
  write_text("model.safetensors.index.json", kIndex);
  fs::remove(path("model-00002-of-00002.safetensors"));
  expect_open_error(ErrorCode::not_found,
                    {"model.safetensors.index.json", path("model-00002-of-00002.safetensors"), "'norm'"});
}

TEST_F(WeightStoreTest, TensorListedInIndexButAbsentFromShard) {
  write_shards();
  write_text("model.safetensors.index.json", R"({"weight_map": {
      "embed": "model-00001-of-00002.safetensors",
      "layers.0.w": "model-00001-of-00002.safetensors",
      "layers.1.w": "model-00001-of-00002.safetensors",
      "norm": "model-00002-of-00002.safetensors"}})");
  expect_open_error(ErrorCode::corrupt_data, {"'layers.1.w'", path("model-00001-of-00002.safetensors")});

  // Listed under the wrong shard counts as absent from its shard too.
  write_text("model.safetensors.index.json", R"({"weight_map": {
      "embed": "model-00001-of-00002.safetensors",
      "norm": "model-00001-of-00002.safetensors"}})");
  expect_open_error(ErrorCode::corrupt_data, {"'norm'", path("model-00001-of-00002.safetensors")});
}

TEST_F(WeightStoreTest, BadIndexFiles) {
  write_shards();
  write_text("model.safetensors.index.json", "{\"weight_map\": ");
  expect_open_error(ErrorCode::corrupt_data, {"model.safetensors.index.json", "not a valid JSON"});
  write_text("model.safetensors.index.json", R"({"metadata": {}})");
  expect_open_error(ErrorCode::corrupt_data, {"model.safetensors.index.json", "weight_map"});
  write_text("model.safetensors.index.json", R"({"weight_map": {"embed": 3}})");
  expect_open_error(ErrorCode::corrupt_data, {"'embed'"});
  write_text("model.safetensors.index.json", R"({"weight_map": {"embed": "../outside.safetensors"}})");
  expect_open_error(ErrorCode::corrupt_data, {"'embed'", "inside the model folder"});
}

TEST_F(WeightStoreTest, TensorInTwoShards) {
  ASSERT_TRUE(write_safetensors(path("a.safetensors"), {make_named_tensor("dup", DType::f32, {1}, {1})}).ok());
  ASSERT_TRUE(write_safetensors(path("b.safetensors"), {make_named_tensor("dup", DType::f32, {1}, {2})}).ok());
  write_text("model.safetensors.index.json", R"({"weight_map": {"dup": "a.safetensors", "x": "b.safetensors"}})");
  expect_open_error(ErrorCode::corrupt_data, {"'dup'", "a.safetensors", "b.safetensors"});
}

TEST_F(WeightStoreTest, CorruptShardErrorNamesFileAndTensor) {
  ASSERT_TRUE(write_safetensors(path("model.safetensors"),
                                {make_named_tensor("big", DType::f32, {64}, std::vector<float>(64, 1.0f))})
                  .ok());
  fs::resize_file(path("model.safetensors"), fs::file_size(path("model.safetensors")) - 10);
  expect_open_error(ErrorCode::corrupt_data, {path("model.safetensors"), "'big'"});
}

TEST_F(WeightStoreTest, EmptyOrMissingFolder) {
  expect_open_error(ErrorCode::not_found,
                    {"no model.safetensors or model.safetensors.index.json in " + dir_.string()});
  auto store = WeightStore::open(path("does_not_exist"));
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.error().code, ErrorCode::not_found);
  EXPECT_NE(store.error().message.find("does_not_exist"), std::string::npos);
}

// read_into: parallel preads give the mapped bytes exactly, for a tensor of several 16 MiB chunks
// (and an odd tail) and a small one; a file cut short after opening is an error naming both.
TEST_F(WeightStoreTest, ReadIntoCopiesTheBytesAndNamesTheTensorWhenTheFileIsShort) {
  NamedTensor big{"big", DType::bf16, {int64_t(20) << 20, 1}, {}};  // 40 MiB: 3 chunks
  big.bytes.resize(size_t(40) << 20);
  for (size_t i = 0; i < big.bytes.size(); ++i) big.bytes[i] = uint8_t((i * 2654435761u) >> 13);
  NamedTensor small{"small", DType::bf16, {3}, {1, 2, 3, 4, 5, 6}};
  ASSERT_TRUE(write_safetensors(path("model.safetensors"), {small, big}).ok());
  auto store = WeightStore::open(dir_.string());
  ASSERT_TRUE(store.ok()) << store.error().message;
  for (const char* name : {"big", "small"}) {
    auto view = store->get(name);
    ASSERT_TRUE(view.ok());
    std::vector<uint8_t> out(view->nbytes + 1, 0xAB);
    ASSERT_TRUE(store->read_into(view.value(), out.data()).ok()) << name;
    const std::vector<uint8_t>& expected = std::string(name) == "big" ? big.bytes : small.bytes;
    EXPECT_TRUE(std::equal(expected.begin(), expected.end(), out.begin())) << name;
    EXPECT_EQ(out.back(), 0xAB) << name << ": wrote past the tensor";
  }
  auto view = store->get("big");
  fs::resize_file(path("model.safetensors"), fs::file_size(path("model.safetensors")) - 1000);
  std::vector<uint8_t> out(view->nbytes);
  Status short_read = store->read_into(view.value(), out.data());
  ASSERT_FALSE(short_read.ok());
  EXPECT_NE(short_read.error().message.find("'big'"), std::string::npos) << short_read.error().message;
  EXPECT_NE(short_read.error().message.find("model.safetensors"), std::string::npos) << short_read.error().message;
  EXPECT_NE(short_read.error().message.find("ends early"), std::string::npos) << short_read.error().message;
  TensorView foreign = view.value();
  foreign.file = path("other.safetensors");
  EXPECT_FALSE(store->read_into(foreign, out.data()).ok());
}

}  // namespace
}  // namespace troupe
