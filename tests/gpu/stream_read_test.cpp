// kernels/stream_read (the benchmarks' read-only bandwidth pass) against its CPU reference: the XOR of
// the per-block folds equals the fold of every word, so no load was skipped, for sizes that do and do
// not fill the unrolled loop and grids larger than the data.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <random>
#include <vector>

#include "kernels/stream_read.hpp"
#include "kernels/stream_tiles.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe {
namespace {

TEST(StreamReadKernel, FoldsEveryWordOnce) {
  TROUPE_REQUIRE_GPU();
  std::mt19937 rng(11);
  for (size_t words : {size_t(1), size_t(7), size_t(4096), size_t(1000003)}) {
    for (int blocks : {1, 3, 264}) {
      std::vector<uint32_t> data(words * 4);
      for (auto& x : data) x = rng();
      void* d_data = nullptr;
      uint32_t* d_partials = nullptr;
      ASSERT_EQ(cudaMalloc(&d_data, data.size() * 4), cudaSuccess);
      ASSERT_EQ(cudaMalloc(&d_partials, size_t(blocks) * 4), cudaSuccess);
      cudaMemcpy(d_data, data.data(), data.size() * 4, cudaMemcpyHostToDevice);
      ASSERT_EQ(kernels::launch_stream_read(d_data, words, d_partials, blocks, nullptr), cudaSuccess);
      std::vector<uint32_t> partials(static_cast<size_t>(blocks), 0u);
      ASSERT_EQ(cudaMemcpy(partials.data(), d_partials, partials.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
      uint32_t fold = 0;
      for (uint32_t p : partials) fold ^= p;
      EXPECT_EQ(fold, kernels::stream_read_ref(data.data(), words)) << words << " words, " << blocks << " blocks";
      EXPECT_EQ(kernels::launch_stream_read(static_cast<char*>(d_data) + 4, words, d_partials, blocks, nullptr),
                cudaErrorInvalidValue);
      EXPECT_EQ(kernels::launch_stream_read(d_data, words, d_partials, 0, nullptr), cudaErrorInvalidValue);
      cudaFree(d_data);
      cudaFree(d_partials);
    }
  }
}

// kernels/stream_tiles reads every word of the matrix once in its tiled order, for every built
// (rows, chunk) pair, rotations that wrap and not, tiles fewer and more than the grid's warps, and
// a step count not a multiple of the three in flight.
TEST(StreamTilesKernel, FoldsEveryWordOnce) {
  TROUPE_REQUIRE_GPU();
  std::mt19937 rng(12);
  const int64_t rows = 16 * 40, row_bytes = 512 * 7;
  std::vector<uint32_t> data(size_t(rows * row_bytes / 4));
  for (auto& x : data) x = rng();
  void* d_data = nullptr;
  uint32_t* d_partials = nullptr;
  ASSERT_EQ(cudaMalloc(&d_data, data.size() * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&d_partials, 64 * 4), cudaSuccess);
  cudaMemcpy(d_data, data.data(), data.size() * 4, cudaMemcpyHostToDevice);
  const uint32_t expect = kernels::stream_read_ref(data.data(), data.size() / 4);
  const int pairs[][2] = {{16, 64}, {16, 128}, {16, 256}, {8, 256}, {8, 512}, {4, 512}};
  for (const auto& [tile_rows, chunk] : pairs)
    for (int rotation : {0, 1, 5})
      for (int blocks : {1, 3, 64}) {
        ASSERT_TRUE(kernels::stream_tiles_supported(tile_rows, chunk));
        ASSERT_EQ(kernels::launch_stream_tiles(d_data, rows, row_bytes, tile_rows, chunk, rotation, d_partials, blocks,
                                               nullptr),
                  cudaSuccess);
        std::vector<uint32_t> partials(static_cast<size_t>(blocks), 0u);
        ASSERT_EQ(cudaMemcpy(partials.data(), d_partials, partials.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
        uint32_t fold = 0;
        for (uint32_t p : partials) fold ^= p;
        EXPECT_EQ(fold, expect) << tile_rows << " rows, chunk " << chunk << ", rotation " << rotation << ", "
                                << blocks << " blocks";
      }
  EXPECT_FALSE(kernels::stream_tiles_supported(16, 512));
  EXPECT_EQ(kernels::launch_stream_tiles(d_data, rows - 8, row_bytes, 16, 128, 0, d_partials, 1, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(kernels::launch_stream_tiles(d_data, rows, row_bytes - 64, 16, 128, 0, d_partials, 1, nullptr),
            cudaErrorInvalidValue);
  cudaFree(d_data);
  cudaFree(d_partials);
}

}  // namespace
}  // namespace troupe
