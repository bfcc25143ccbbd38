#include <cuda_runtime_api.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/rmsnorm.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe::cuda {
using namespace kernels;
namespace {

// The kernel against its CPU reference on awkward sizes; outputs are poisoned with NaN first.
TEST(RmsNormKernel, MatchesCpuReference) {
  TROUPE_REQUIRE_GPU();
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t num_tokens : {1, 19, 99, 989}) {
    for (int64_t hidden : {111, 500, 4096}) {
      std::vector<float> x(num_tokens * hidden), w(hidden), expected(x.size()), actual(x.size());
      for (auto& v : x) v = normal(rng);
      for (auto& v : w) v = normal(rng);
      rmsnorm_ref(x.data(), w.data(), expected.data(), num_tokens, hidden, 1e-6f);

      float *dx, *dw, *dout;
      ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dx), x.size() * 4), cudaSuccess);
      ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dw), w.size() * 4), cudaSuccess);
      ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&dout), x.size() * 4), cudaSuccess);
      cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
      cudaMemcpy(dw, w.data(), w.size() * 4, cudaMemcpyHostToDevice);
      cudaMemset(dout, 0xff, x.size() * 4);  // NaN poison
      ASSERT_EQ(launch_rmsnorm_f32(dx, dw, dout, num_tokens, hidden, 1e-6f, nullptr), cudaSuccess);
      ASSERT_EQ(cudaMemcpy(actual.data(), dout, x.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
      cudaFree(dx);
      cudaFree(dw);
      cudaFree(dout);

      double max_diff = 0.0;
      for (size_t i = 0; i < x.size(); ++i) max_diff = std::max(max_diff, double(std::fabs(actual[i] - expected[i])));
      // fp32 with a different summation order: 1e-4 absolute on O(1) values.
      EXPECT_LT(max_diff, 1e-4) << "tokens=" << num_tokens << " hidden=" << hidden;
    }
  }
}

TEST(RmsNormKernel, RejectsBadSizes) {
  TROUPE_REQUIRE_GPU();
  EXPECT_EQ(launch_rmsnorm_f32(nullptr, nullptr, nullptr, 4, 0, 1e-6f, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_rmsnorm_f32(nullptr, nullptr, nullptr, 0, 128, 1e-6f, nullptr), cudaSuccess);
}

}  // namespace
}  // namespace troupe::cuda
