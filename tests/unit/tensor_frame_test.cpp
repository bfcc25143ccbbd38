// api/tensor_frame: the bytes of a tensor (or an error) between the stages of a custom pipeline.
// Compiled in from its source: the decoder is hidden inside libtroupe_api.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "api/tensor_frame.hpp"
#include "tests/unit/test_bytes.hpp"

namespace troupe::api::detail {
namespace {


TEST(TensorFrame, RoundTripsTensorsAndErrors) {
  Tensor tensor({2, 3}, {1, 2, 3, 4, 5, 6});
  auto bytes = encode_tensor(tensor);
  auto back = decode_frame(bytes.data(), bytes.size());
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->shape, tensor.shape);
  EXPECT_EQ(back->data, tensor.data);
  auto error = encode_error(make_error(ErrorCode::not_found, "stage 2 failed"));
  auto failed = decode_frame(error.data(), error.size());
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, ErrorCode::not_found);
  EXPECT_EQ(failed.error().message, "stage 2 failed");
}

// Found by tests/fuzz (fuzz_step_codec): dims whose product overflows int64 were multiplied
// unchecked (UB), and a product that wrapped to fit the data passed the size check.
TEST(TensorFrame, DimsWhoseProductOverflowsAreCorruptNotUndefined) {
  const auto crash = testing::base64_decode("SlRSUEYAAAAA/gAAVAMAAAAAAAAeUlBGAADw8PABAAAAAAAAHgAAAAAAIAAAAAAI");
  const std::vector<uint8_t> frame(crash.begin() + 1, crash.end());  // byte 0 picked the decoder
  auto r = decode_frame(frame.data(), frame.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::corrupt_data);

  // Dims {2^62, 1}: 2^62 floats wrap to 0 bytes, which the empty data section then matched.
  auto wrapped = encode_tensor(Tensor({}, {}));
  const uint32_t ndim = 2;
  std::memcpy(wrapped.data() + 12, &ndim, 4);
  const int64_t dims[2] = {int64_t{1} << 62, 1};
  wrapped.insert(wrapped.end(), reinterpret_cast<const uint8_t*>(dims), reinterpret_cast<const uint8_t*>(dims + 2));
  wrapped.resize(16 + 16);  // no data
  auto w = decode_frame(wrapped.data(), wrapped.size());
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, ErrorCode::corrupt_data);
}

}  // namespace
}  // namespace troupe::api::detail
