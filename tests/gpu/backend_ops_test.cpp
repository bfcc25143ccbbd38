// The op table (backend_ops_table.hpp) on the GPU: one test per op and dtype variant
// (Table/BackendOps.MatchesCpuReference/<op>_<variant>), each running all its rows (awkward sizes,
// NaN-poisoned outputs) against the CPU references and printing each output's NMSE. Plus the
// launchers' refusals of bad sizes. bench/backend_ops_bench.cpp times the same rows.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <random>
#include <string>

#include "kernels/gemv.hpp"
#include "kernels/moe_align.hpp"
#include "kernels/moe_combine.hpp"
#include "kernels/moe_routing.hpp"
#include "kernels/qkv_rope.hpp"
#include "kernels/rmsnorm.hpp"
#include "tests/gpu/backend_ops_table.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe::backend_ops {
namespace {

class BackendOps : public ::testing::TestWithParam<std::string> {};

TEST_P(BackendOps, MatchesCpuReference) {
  TROUPE_REQUIRE_GPU();
  std::mt19937 rng(1234);
  int64_t num_rows = 0;
  for (const OpCase& c : op_table()) {
    if (c.key() != GetParam()) continue;
    ++num_rows;
    const std::string what = c.op + " [" + c.variant + "] " + c.sizes;
    OpRun run = c.make(rng);
    ASSERT_EQ(run.error, "") << what;
    ASSERT_EQ(run.launch(nullptr), cudaSuccess) << what;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess) << what;
    run.reference();
    for (const Output& out : run.outputs) {
      double measured = 0;
      EXPECT_EQ(check_output(out, &measured), "") << what;
      char tolerance[32];
      std::snprintf(tolerance, sizeof(tolerance), out.tolerance == 0 ? "bit-identical" : "<= %.0e", out.tolerance);
      std::printf("%-20s %-12s %-58s %-9s NMSE %.2e  (%s)\n", c.op.c_str(), c.variant.c_str(), c.sizes.c_str(),
                  out.name.c_str(), measured, tolerance);
    }
  }
  EXPECT_GT(num_rows, 0) << "no table row has key " << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Table, BackendOps, ::testing::ValuesIn(op_keys()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// Sizes the launchers refuse (cudaErrorInvalidValue, nothing launched) or skip (nothing to do).
TEST(KernelLaunchers, RejectBadSizes) {
  TROUPE_REQUIRE_GPU();
  using namespace kernels;
  EXPECT_EQ(launch_rmsnorm_f32(nullptr, nullptr, nullptr, 4, 0, 1e-6f, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_rmsnorm_f32(nullptr, nullptr, nullptr, 0, 128, 1e-6f, nullptr), cudaSuccess);

  float* some = nullptr;
  ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&some), 4096), cudaSuccess);
  const uint16_t* w16 = reinterpret_cast<const uint16_t*>(some);
  EXPECT_EQ(launch_gemv_bf16(some, w16, nullptr, some + 512, 0, 4, 4, nullptr), cudaSuccess);  // nothing to do
  EXPECT_EQ(launch_gemv_bf16(some, w16, nullptr, some + 512, 9, 4, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_gemv_bf16(some, w16, nullptr, some + 512, 1, 0, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_gemv_bf16(some, w16, nullptr, some + 512, 1, 4, 0, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_gemv_bf16(nullptr, w16, nullptr, some + 512, 1, 4, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_gemv_bf16_x16(w16, w16, nullptr, some + 512, 0, 4, 4, nullptr), cudaSuccess);
  EXPECT_EQ(launch_gemv_bf16_x16(w16, w16, nullptr, some + 512, 9, 4, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_gemv_bf16_x16(w16, w16, nullptr, some + 512, 1, 0, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_gemv_bf16_x16(nullptr, w16, nullptr, some + 512, 1, 4, 4, nullptr), cudaErrorInvalidValue);

  // A rotary part wider than the head (2 * half > head_dim) is refused, not run.
  const int32_t* i32 = reinterpret_cast<const int32_t*>(some);
  EXPECT_EQ(launch_qkv_rope_write_kv_f32(some, i32, some, i32, some + 256, some + 256, some + 512, 1, 1, 1, 8, 8,
                                         nullptr),
            cudaErrorInvalidValue);

  // The MoE router's limits: E 1..512, groups dividing E (<= 32), top_k 1..min(E, 32).
  int32_t* ids = reinterpret_cast<int32_t*>(some + 768);
  auto route = [&](MoeRouteParams p, int64_t n = 1) { return launch_moe_route_f32(some, some, ids, some + 512, n, p, nullptr); };
  EXPECT_EQ(route({8, 4, 2, 2, true, 1.0f}, 0), cudaSuccess);
  EXPECT_EQ(route({0, 1, 1, 1, true, 1.0f}), cudaErrorInvalidValue);
  EXPECT_EQ(route({513, 1, 1, 8, true, 1.0f}), cudaErrorInvalidValue);
  EXPECT_EQ(route({8, 3, 1, 2, true, 1.0f}), cudaErrorInvalidValue);
  EXPECT_EQ(route({64, 64, 1, 2, true, 1.0f}), cudaErrorInvalidValue);
  EXPECT_EQ(route({8, 4, 2, 0, true, 1.0f}), cudaErrorInvalidValue);
  EXPECT_EQ(route({8, 4, 2, 9, true, 1.0f}), cudaErrorInvalidValue);
  EXPECT_EQ(route({64, 1, 1, 33, true, 1.0f}), cudaErrorInvalidValue);
  // The grouping's: E 1..512, pad_to >= 1, a capacity that holds the padded layout.
  EXPECT_EQ(launch_moe_align(ids, 8, 513, 1, ids, ids, ids, 8, ids, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_moe_align(ids, 8, 8, 0, ids, ids, ids, 8, ids, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_moe_align(ids, 8, 8, 4, ids, ids, ids, 8, ids, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_moe_gather_f32(some, ids, some, 4, 0, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_moe_combine_f32(some, ids, some, nullptr, some, -1, 2, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  cudaFree(some);
}

}  // namespace
}  // namespace troupe::backend_ops
