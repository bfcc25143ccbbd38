// kernels/token_mask against its CPU reference on awkward sizes (vocab 1, 31, 33, 989, 129280;
// masked rows among unmasked ones), NaN-free: masked ids become -inf, the others stay bit-equal.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/token_mask.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe {
namespace {

TEST(TokenMaskKernel, MatchesTheReference) {
  TROUPE_REQUIRE_GPU();
  std::mt19937 rng(5);
  for (int64_t vocab : {1, 31, 33, 989, 129280}) {
    const int64_t num_logit_rows = 5, words = (vocab + 31) / 32;
    const std::vector<int32_t> rows = {0, 3, 4};
    std::vector<float> logits(size_t(num_logit_rows * vocab));
    for (auto& x : logits) x = float(rng() % 1000) / 100.0f - 5.0f;
    std::vector<uint32_t> masks(rows.size() * size_t(words));
    for (auto& w : masks) w = rng();
    std::vector<float> expected = logits;
    kernels::apply_token_mask_ref(expected.data(), vocab, rows.data(), int64_t(rows.size()), masks.data(), words);

    float* d_logits = nullptr;
    int32_t* d_rows = nullptr;
    uint32_t* d_masks = nullptr;
    ASSERT_EQ(cudaMalloc(&d_logits, logits.size() * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&d_rows, rows.size() * sizeof(int32_t)), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&d_masks, masks.size() * sizeof(uint32_t)), cudaSuccess);
    cudaMemcpy(d_logits, logits.data(), logits.size() * sizeof(float), cudaMemcpyHostToDevice);
    cudaMemcpy(d_rows, rows.data(), rows.size() * sizeof(int32_t), cudaMemcpyHostToDevice);
    cudaMemcpy(d_masks, masks.data(), masks.size() * sizeof(uint32_t), cudaMemcpyHostToDevice);
    ASSERT_EQ(kernels::launch_apply_token_mask_f32(d_logits, vocab, d_rows, int64_t(rows.size()), d_masks, words, nullptr),
              cudaSuccess);
    std::vector<float> got(logits.size());
    ASSERT_EQ(cudaMemcpy(got.data(), d_logits, got.size() * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(std::memcmp(got.data(), expected.data(), got.size() * sizeof(float)), 0) << "vocab " << vocab;
    EXPECT_EQ(kernels::launch_apply_token_mask_f32(d_logits, vocab, d_rows, 1, d_masks, words - 1, nullptr),
              cudaErrorInvalidValue);
    cudaFree(d_logits);
    cudaFree(d_rows);
    cudaFree(d_masks);
  }
}

}  // namespace
}  // namespace troupe
