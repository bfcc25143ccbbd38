#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "runtime/safetensors_file.hpp"
#include "runtime/safetensors_writer.hpp"

namespace troupe {
namespace {

namespace fs = std::filesystem;

// A fresh folder under the system temp dir, removed at the end of the test.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("troupe_safetensors_" + std::string(info->name()) + "_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  static std::vector<uint8_t> read_bytes(const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
  }
  static void write_bytes(const std::string& file, const std::vector<uint8_t>& bytes) {
    std::ofstream out(file, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  }
  // A file from a hand-written header: [u64 LE length][header][data].
  std::string write_raw(const std::string& name, const std::string& header, size_t num_data_bytes,
                        uint64_t length_override = 0) {
    std::vector<uint8_t> bytes(8);
    const uint64_t length = length_override ? length_override : header.size();
    for (int i = 0; i < 8; ++i) bytes[i] = uint8_t(length >> (8 * i));
    bytes.insert(bytes.end(), header.begin(), header.end());
    bytes.resize(bytes.size() + num_data_bytes, 0x11);
    write_bytes(path(name), bytes);
    return path(name);
  }

  // Opening must fail with `code` and a message naming the file and each of `words`.
  void expect_error(const std::string& file, ErrorCode code, std::vector<std::string> words) {
    auto opened = SafetensorsFile::open(file);
    ASSERT_FALSE(opened.ok()) << file;
    EXPECT_EQ(opened.error().code, code) << opened.error().message;
    words.push_back(file);
    for (const auto& word : words) {
      EXPECT_NE(opened.error().message.find(word), std::string::npos)
          << "'" << word << "' not in: " << opened.error().message;
    }
  }

  fs::path dir_;
};

TEST_F(SafetensorsTest, RoundTripsF32Bf16F16ThroughTheWriter) {
  // Values exactly representable in all three dtypes, so every round trip is exact.
  const std::vector<float> values = {1.0f, -2.0f, 0.5f, 3.25f, -0.125f, 0.0f};
  const std::string file = path("model.safetensors");
  ASSERT_TRUE(write_safetensors(file,
                                {make_named_tensor("a.f32", DType::f32, {2, 3}, values),
                                 make_named_tensor("b.bf16", DType::bf16, {3, 2}, values),
                                 make_named_tensor("c.f16", DType::f16, {6}, values)},
                                {{"format", "pt"}})
                  .ok());
  auto opened = SafetensorsFile::open(file);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  const SafetensorsFile& st = **opened;
  EXPECT_EQ(st.path(), file);
  ASSERT_EQ(st.tensors().size(), 3u);
  EXPECT_EQ(st.metadata().at("format"), "pt");
  EXPECT_EQ(st.find("__metadata__"), nullptr);
  EXPECT_EQ(st.find("missing"), nullptr);
  const std::pair<const char*, DType> expected[] = {{"a.f32", DType::f32}, {"b.bf16", DType::bf16}, {"c.f16", DType::f16}};
  for (const auto& [name, dtype] : expected) {
    const TensorView* view = st.find(name);
    ASSERT_NE(view, nullptr) << name;
    EXPECT_EQ(view->dtype, dtype);
    EXPECT_EQ(view->file, file);
    EXPECT_EQ(view->numel(), 6);
    EXPECT_EQ(view->nbytes, 6 * dtype_size(dtype));
    std::vector<float> out(6);
    ASSERT_TRUE(convert_to_f32(view->dtype, view->data, out.size(), out.data()));
    EXPECT_EQ(out, values) << name;
  }
  EXPECT_EQ(st.find("a.f32")->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(shape_to_string(st.find("b.bf16")->shape), "[3, 2]");
  // The writer pads the header so the data section starts 8-byte aligned.
  const auto bytes = read_bytes(file);
  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);
  EXPECT_EQ(header_size % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + header_size + 6 * (4 + 2 + 2));
}

TEST_F(SafetensorsTest, AcceptsHandWrittenHeaderWithScalarEmptyAndUnorderedTensors) {
  const std::string file = write_raw("ok.safetensors",
                                     R"({"__metadata__":{"format":"pt","n":1},)"
                                     R"("w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},)"
                                     R"("s":{"dtype":"I32","shape":[],"data_offsets":[0,4]},)"
                                     R"("e":{"dtype":"BF16","shape":[0,7],"data_offsets":[12,12]}})",
                                     12);
  auto opened = SafetensorsFile::open(file);
  ASSERT_TRUE(opened.ok()) << opened.error().message;
  EXPECT_EQ((*opened)->tensors().size(), 3u);
  EXPECT_EQ((*opened)->find("s")->numel(), 1);
  EXPECT_EQ((*opened)->find("e")->numel(), 0);
  EXPECT_EQ((*opened)->metadata().count("n"), 0u);  // non-string metadata is ignored
  EXPECT_EQ(static_cast<const uint8_t*>((*opened)->find("w")->data) -
                static_cast<const uint8_t*>((*opened)->find("s")->data),
            4);
}

TEST_F(SafetensorsTest, TruncatedFileFailsAtEveryCutPoint) {
  const std::string good = path("good.safetensors");
  ASSERT_TRUE(write_safetensors(good, {make_named_tensor("first", DType::f32, {4}, {1, 2, 3, 4}),
                                       make_named_tensor("second", DType::bf16, {2, 2}, {1, 2, 3, 4})})
                  .ok());
  const auto bytes = read_bytes(good);
  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);
  const size_t data_begin = 8 + header_size;
  const size_t cuts[] = {0, 1, 7, 8, 9, data_begin / 2, data_begin - 1, data_begin, data_begin + 3,
                         data_begin + 16, bytes.size() - 1};
  for (size_t cut : cuts) {
    SCOPED_TRACE("cut at " + std::to_string(cut) + " of " + std::to_string(bytes.size()));
    const std::string file = path("cut_" + std::to_string(cut) + ".safetensors");
    write_bytes(file, std::vector<uint8_t>(bytes.begin(), bytes.begin() + long(cut)));
    if (cut < 8) {
      expect_error(file, ErrorCode::corrupt_data, {"shorter than the 8-byte header length"});
    } else if (cut < data_begin) {
      expect_error(file, ErrorCode::corrupt_data, {"runs past the end of the file"});
    } else if (cut < data_begin + 16) {
      expect_error(file, ErrorCode::corrupt_data, {"tensor 'first'", "truncated"});
    } else {
      expect_error(file, ErrorCode::corrupt_data, {"tensor 'second'", "truncated"});
    }
  }
}

TEST_F(SafetensorsTest, RandomByteFlipsNeverCrash) {
  const std::string good = path("good.safetensors");
  ASSERT_TRUE(write_safetensors(good, {make_named_tensor("a", DType::f32, {3}, {1, 2, 3}),
                                       make_named_tensor("b", DType::f16, {2, 2}, {1, 2, 3, 4})})
                  .ok());
  const auto bytes = read_bytes(good);
  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);
  uint32_t state = 12345;  // fixed-seed LCG: the same corruptions every run
  auto next = [&state] { return state = state * 1664525u + 1013904223u; };
  int num_rejected = 0;
  for (int trial = 0; trial < 300; ++trial) {
    auto corrupted = bytes;
    const int num_flips = 1 + int(next() % 3);
    for (int f = 0; f < num_flips; ++f) corrupted[next() % (8 + header_size)] = uint8_t(next() >> 24);
    const std::string file = path("flip.safetensors");
    write_bytes(file, corrupted);
    auto opened = SafetensorsFile::open(file);
    if (opened.ok()) {
      for (const TensorView& view : (*opened)->tensors()) {  // accepted views are consistent and readable
        EXPECT_EQ(size_t(view.numel()) * dtype_size(view.dtype), view.nbytes);
        EXPECT_LE(view.nbytes, (*opened)->file_size());
        std::vector<float> values(size_t(view.numel()));
        (void)convert_to_f32(view.dtype, view.data, values.size(), values.data());
      }
    } else {
      ++num_rejected;
      EXPECT_NE(opened.error().message.find(file), std::string::npos) << opened.error().message;
    }
  }
  EXPECT_GT(num_rejected, 0);
}

TEST_F(SafetensorsTest, HeaderLengthLargerThanFile) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  expect_error(write_raw("long.safetensors", header, 4, header.size() + 5), ErrorCode::corrupt_data,
               {"header length", "past the end"});
  expect_error(write_raw("huge.safetensors", header, 4, ~uint64_t(0)), ErrorCode::corrupt_data,
               {"exceeds the limit"});
}

TEST_F(SafetensorsTest, GarbageOrNonObjectJson) {
  expect_error(write_raw("garbage.safetensors", "{\"w\": {\"dtype\": ", 0), ErrorCode::corrupt_data,
               {"not valid JSON"});
  expect_error(write_raw("binary.safetensors", std::string("\x00\xff\x01", 3), 0), ErrorCode::corrupt_data,
               {"not valid JSON"});
  expect_error(write_raw("array.safetensors", "[1, 2]", 0), ErrorCode::corrupt_data, {"not a JSON object"});
  expect_error(write_raw("entry.safetensors", R"({"w": 5})", 0), ErrorCode::corrupt_data,
               {"tensor 'w'", "not a JSON object"});
}

TEST_F(SafetensorsTest, OffsetsOutOfRangeOrReversed) {
  expect_error(write_raw("range.safetensors", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8),
               ErrorCode::corrupt_data, {"tensor 'w'", "[0, 16]", "8 bytes"});
  expect_error(write_raw("rev.safetensors", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8),
               ErrorCode::corrupt_data, {"tensor 'w'", "begin > end"});
  expect_error(write_raw("neg.safetensors", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 8),
               ErrorCode::corrupt_data, {"tensor 'w'", "data_offsets"});
  expect_error(write_raw("one.safetensors", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 8),
               ErrorCode::corrupt_data, {"tensor 'w'", "data_offsets"});
  expect_error(write_raw("none.safetensors", R"({"w":{"dtype":"F32","shape":[1]}})", 8), ErrorCode::corrupt_data,
               {"tensor 'w'", "data_offsets"});
}

TEST_F(SafetensorsTest, SizeNotMatchingShape) {
  expect_error(write_raw("size.safetensors", R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 16),
               ErrorCode::corrupt_data, {"tensor 'w'", "12 bytes", "[2, 2]", "needs 16"});
  expect_error(write_raw("big.safetensors",
                         R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4),
               ErrorCode::corrupt_data, {"tensor 'w'", "too large"});
}

TEST_F(SafetensorsTest, UnknownDtypeAndBadShape) {
  expect_error(write_raw("dtype.safetensors", R"({"w":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}})", 1),
               ErrorCode::corrupt_data, {"tensor 'w'", "unknown dtype 'F7'"});
  expect_error(write_raw("nodtype.safetensors", R"({"w":{"shape":[1],"data_offsets":[0,1]}})", 1),
               ErrorCode::corrupt_data, {"tensor 'w'", "dtype"});
  expect_error(write_raw("negdim.safetensors", R"({"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", 1),
               ErrorCode::corrupt_data, {"tensor 'w'", "shape"});
  expect_error(write_raw("strdim.safetensors", R"({"w":{"dtype":"U8","shape":["1"],"data_offsets":[0,1]}})", 1),
               ErrorCode::corrupt_data, {"tensor 'w'", "shape"});
  expect_error(write_raw("fdim.safetensors", R"({"w":{"dtype":"U8","shape":[1.5],"data_offsets":[0,1]}})", 1),
               ErrorCode::corrupt_data, {"tensor 'w'", "shape"});
  expect_error(write_raw("noshape.safetensors", R"({"w":{"dtype":"U8","data_offsets":[0,1]}})", 1),
               ErrorCode::corrupt_data, {"tensor 'w'", "shape"});
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  expect_error(write_raw("overlap.safetensors",
                         R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                         12),
               ErrorCode::corrupt_data, {"tensor 'b'", "overlaps tensor 'a'"});
}

TEST_F(SafetensorsTest, MissingFileOrDirectory) {
  expect_error(path("absent.safetensors"), ErrorCode::not_found, {"cannot open"});
  expect_error(dir_.string(), ErrorCode::invalid_argument, {"not a regular file"});
}

TEST_F(SafetensorsTest, WriterRejectsBadTensorsNamingThem) {
  NamedTensor short_tensor{"short", DType::f32, {2}, std::vector<uint8_t>(4)};
  Status status = write_safetensors(path("w.safetensors"), {short_tensor});
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, ErrorCode::invalid_argument);
  EXPECT_NE(status.error().message.find("tensor 'short'"), std::string::npos) << status.error().message;
  EXPECT_NE(status.error().message.find(path("w.safetensors")), std::string::npos);
  NamedTensor one{"x", DType::u8, {1}, {7}};
  status = write_safetensors(path("w.safetensors"), {one, one});
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("duplicate"), std::string::npos);
  status = write_safetensors(path("w.safetensors"), {NamedTensor{"neg", DType::u8, {-1}, {}}});
  EXPECT_FALSE(status.ok());
  status = write_safetensors(path("no_dir/w.safetensors"), {one});
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("cannot open"), std::string::npos);
}

}  // namespace
}  // namespace troupe
