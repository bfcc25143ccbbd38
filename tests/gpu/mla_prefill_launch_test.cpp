// The tensor-core MLA prefill's launcher and work list refuse what they cannot run (nothing
// launched), and the work list covers every new row once, longest tiles first.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include "kernels/mla_prefill.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe::kernels {
namespace {

TEST(MlaPrefillMma, TilesCoverEveryRowLongestFirst) {
  const std::vector<int32_t> tiles = mla_prefill_tiles({{0, 65, 65, 0}, {70, 3, 200, 65}, {73, 1, 1, 265}}, 64);
  ASSERT_EQ(tiles.size(), 4u * 4);
  // {token0, num_rows, pos0, key0}: (0, 64, 0, 0), (64, 1, 64, 0), (70, 3, 197, 65), (73, 1, 0, 265);
  // ordered by last visible key: 200, 65, 64, 1.
  const std::vector<int32_t> want = {70, 3, 197, 65, 64, 1, 64, 0, 0, 64, 0, 0, 73, 1, 0, 265};
  EXPECT_EQ(tiles, want);
  EXPECT_TRUE(mla_prefill_tiles({{0, 5, 4, 0}}).empty());  // more new tokens than context
  EXPECT_TRUE(mla_prefill_tiles({{0, 0, 4, 0}}).empty());
  EXPECT_TRUE(mla_prefill_tiles({{-1, 1, 4, 0}}).empty());
  const std::vector<int32_t> wide = mla_prefill_tiles({{0, 130, 200, 0}}, 128);  // 128-row tiles
  EXPECT_EQ(wide, (std::vector<int32_t>{128, 2, 198, 0, 0, 128, 70, 0}));
}

TEST(MlaPrefillMma, LauncherRefusesBadShapes) {
  TROUPE_REQUIRE_GPU();
  EXPECT_TRUE(mla_prefill_mma_supports(128, 64, 128));
  EXPECT_FALSE(mla_prefill_mma_supports(16, 8, 16));
  const float* f = nullptr;
  const uint16_t* b = nullptr;
  const int32_t* i = nullptr;
  EXPECT_EQ(launch_mla_prefill_mma(f, b, b, i, 0, 64, 128, 128, 64, 128, 1.0f, nullptr, nullptr), cudaSuccess);
  EXPECT_EQ(launch_mla_prefill_mma(f, b, b, i, 1, 64, 128, 16, 8, 16, 1.0f, nullptr, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_mla_prefill_mma(f, b, b, i, 1, 64, 128, 128, 64, 128, 1.0f, nullptr, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_mla_prefill_mma(f, b, b, i, 1, 96, 128, 128, 64, 128, 1.0f, nullptr, nullptr),
            cudaErrorInvalidValue);  // tile rows 64 or 128 only
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

TEST(MlaPrefillWgmma, LauncherRefusesBadShapes) {
  TROUPE_REQUIRE_GPU();
  const float* f = nullptr;
  const uint16_t* b = nullptr;
  const int32_t* i = nullptr;
  EXPECT_EQ(launch_mla_prefill_wgmma(f, b, b, i, 0, 128, 128, 128, 64, 128, 1.0f, nullptr, nullptr), cudaSuccess);
  EXPECT_EQ(launch_mla_prefill_wgmma(f, b, b, i, 1, 128, 128, 16, 8, 16, 1.0f, nullptr, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_mla_prefill_wgmma(f, b, b, i, 1, 128, 128, 128, 64, 128, 1.0f, nullptr, nullptr),
            cudaErrorInvalidValue);  // null pointers
  float* o = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&o), 4), cudaSuccess);
  const float* q = o;
  const uint16_t* kv = reinterpret_cast<const uint16_t*>(o);
  const int32_t* t = reinterpret_cast<const int32_t*>(o);
  EXPECT_EQ(launch_mla_prefill_wgmma(q, kv, kv, t, 1, 96, 128, 128, 64, 128, 1.0f, o, nullptr),
            cudaErrorInvalidValue);  // tile rows 64 or 128 only
  EXPECT_EQ(launch_mla_prefill_wgmma(q, kv, kv, t, 1, 128, 128, 128, 64, 128, 1.0f, o, nullptr, 32),
            cudaErrorInvalidValue);  // key tiles 64 or 128 only
  EXPECT_EQ(launch_mla_prefill_wgmma(q, kv, kv, t, 1, 64, 128, 128, 64, 128, 1.0f, o, nullptr, 128),
            cudaErrorInvalidValue);  // 128-key tiles need 128-row tiles
  EXPECT_EQ(launch_mla_prefill_wgmma(q, kv, kv, t, 1, 128, 0, 128, 64, 128, 1.0f, o, nullptr),
            cudaErrorInvalidValue);  // no heads
  EXPECT_EQ(cudaFree(o), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
}  // namespace troupe::kernels
