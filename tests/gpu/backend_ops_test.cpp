// The op table (backend_ops_table.hpp) on the GPU: one test per op and dtype variant
// (Table/BackendOps.MatchesCpuReference/<op>_<variant>), each running all its rows (awkward sizes,
// NaN-poisoned outputs) against the CPU references and printing each output's NMSE. Plus the
// launchers' refusals of bad sizes. bench/backend_ops_bench.cpp times the same rows.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>

#include "kernels/attention_decode.hpp"
#include "kernels/attention_decode_mma.hpp"
#include "kernels/fp8_gemv_f16.hpp"
#include "kernels/gemv.hpp"
#include "kernels/moe_align.hpp"
#include "kernels/moe_combine.hpp"
#include "kernels/moe_routing.hpp"
#include "kernels/moe_grouped_gemm.hpp"
#include "kernels/moe_f16_gemv.hpp"
#include "kernels/moe_rows_gemv.hpp"
#include "kernels/moe_segment_quant.hpp"
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
    const cudaError_t launched = run.launch(nullptr);
    if (launched == cudaErrorNotSupported) {  // a Hopper-only kernel on another GPU: said, not failed
      std::printf("%-20s %-12s %-58s not run: %s\n", c.op.c_str(), c.variant.c_str(), c.sizes.c_str(),
                  cudaGetErrorString(launched));
      continue;
    }
    ASSERT_EQ(launched, cudaSuccess) << what;
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
  // The FP8 GEMV with the norm in its staging: fp8_gemv_f16_supported's sizes and a norm weight.
  const auto* w8 = reinterpret_cast<const uint8_t*>(some);
  EXPECT_EQ(launch_fp8_gemv_f16_rmsnorm(some, nullptr, 1e-6f, w8, some, some + 512, 1, 16, 128, nullptr),
            cudaErrorInvalidValue);  // no norm weight
  EXPECT_EQ(launch_fp8_gemv_f16_rmsnorm(some, some, 1e-6f, w8, some, some + 512, 9, 16, 128, nullptr),
            cudaErrorInvalidValue);  // 9 tokens
  EXPECT_EQ(launch_fp8_gemv_f16_rmsnorm(some, some, 1e-6f, w8, some, some + 512, 1, 16, 120, nullptr),
            cudaErrorInvalidValue);  // k % 16
  EXPECT_EQ(launch_gemv_bf16(nullptr, w16, nullptr, some + 512, 1, 4, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_gemv_bf16_x16(w16, w16, nullptr, some + 512, 0, 4, 4, nullptr), cudaSuccess);
  EXPECT_EQ(launch_gemv_bf16_x16(w16, w16, nullptr, some + 512, 9, 4, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_gemv_bf16_x16(w16, w16, nullptr, some + 512, 1, 0, 4, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_gemv_bf16_x16(nullptr, w16, nullptr, some + 512, 1, 4, 4, nullptr), cudaErrorInvalidValue);

  // A rotary part wider than the head (2 * half > head_dim) is refused, not run.
  const int32_t* i32 = reinterpret_cast<const int32_t*>(some);
  EXPECT_EQ(launch_qkv_rope_write_kv_f32(some, i32, some, i32, some + 256, some + 256, some + 512, 1, 1, 1, 8, 8,
                                         HeadNorms{}, nullptr),
            cudaErrorInvalidValue);
  // A q/k norm with a negative or NaN eps is refused; without a norm weight eps is not read.
  EXPECT_EQ(launch_qkv_rope_write_kv_f32(some, i32, some, i32, some + 256, some + 256, some + 512, 1, 1, 1, 8, 4,
                                         HeadNorms{nullptr, some + 768, -1e-6f}, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(launch_qkv_rope_write_kv_f32(some, i32, some, i32, some + 256, some + 256, some + 512, 1, 1, 1, 8, 4,
                                         HeadNorms{some + 768, nullptr, NAN}, nullptr),
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
  // The one-token expert launchers: no byte-load path (k % 16 == 0), K up to kMoeRowsMaxK, a
  // 16-byte aligned x_perm, an act stride of whole 128-blocks; max_active 0: nothing to do.
  const auto* table_w = reinterpret_cast<const uint8_t* const*>(some);
  const auto* table_s = reinterpret_cast<const float* const*>(some);
  auto rows_down = [&](const uint16_t* x, int64_t stride, int64_t max_active, int64_t n, int64_t k) {
    return launch_moe_rows_gemv(x, stride, table_w, table_s, ids, ids, ids, max_active, some, n, k, nullptr);
  };
  EXPECT_EQ(rows_down(w16, 128, 0, 64, 128), cudaSuccess);
  EXPECT_EQ(rows_down(w16, 128, 9, 64, 120), cudaErrorInvalidValue);  // k % 16
  EXPECT_EQ(rows_down(w16, 128, 9, 0, 128), cudaErrorInvalidValue);   // n
  EXPECT_EQ(rows_down(w16, 64, 9, 64, 128), cudaErrorInvalidValue);   // x_stride < 128
  EXPECT_EQ(rows_down(w16 + 1, 128, 9, 64, 128), cudaErrorInvalidValue);  // x_perm misaligned
  EXPECT_EQ(rows_down(w16, kMoeRowsMaxK + 128, 9, 64, kMoeRowsMaxK + 16), cudaErrorInvalidValue);
  EXPECT_EQ(rows_down(w16, 128, 65536, 64, 128), cudaErrorInvalidValue);
  uint16_t* act16 = reinterpret_cast<uint16_t*>(some + 512);
  EXPECT_EQ(launch_moe_rows_gate_up_silu(w16, 128, table_w, table_s, ids, ids, ids, 9, act16, 64, 100, 128, nullptr),
            cudaErrorInvalidValue);  // act_stride < 128
  EXPECT_EQ(launch_moe_rows_gate_up_silu(w16, 128, table_w, table_s, ids, ids, ids, 9, act16, 128, 0, 128, nullptr),
            cudaErrorInvalidValue);  // inter
  // Their f16 tensor-core twins: the same refusals, and gate_up tiles of 8 columns (inter % 8 == 0).
  auto f16_down = [&](const uint16_t* x, int64_t stride, int64_t max_active, int64_t n, int64_t k,
                      int64_t max_positions = 9) {
    return launch_moe_f16_gemv(x, stride, table_w, table_s, ids, ids, ids, max_active, max_positions,
                               max_positions > max_active ? 8 : 1, some, n, k, nullptr);
  };
  EXPECT_EQ(f16_down(w16, 128, 0, 64, 128), cudaSuccess);
  EXPECT_EQ(f16_down(w16, 128, 9, 64, 120), cudaErrorInvalidValue);
  EXPECT_EQ(f16_down(w16, 128, 9, 0, 128), cudaErrorInvalidValue);
  EXPECT_EQ(f16_down(w16, 64, 9, 64, 128), cudaErrorInvalidValue);
  EXPECT_EQ(f16_down(w16 + 1, 128, 9, 64, 128), cudaErrorInvalidValue);
  EXPECT_EQ(f16_down(w16, 128, 65536, 64, 128), cudaErrorInvalidValue);
  EXPECT_EQ(f16_down(w16, 128, 9, 64, 128, -1), cudaErrorInvalidValue);  // max_positions
  EXPECT_EQ(launch_moe_f16_gemv(w16, 128, table_w, table_s, ids, ids, ids, 9, 9, 0, some, 64, 128, nullptr),
            cudaErrorInvalidValue);  // tokens
  // Units of 8 positions at K 128: 9 + 600,000 / 8 block rows, past the grid's 65,535.
  EXPECT_EQ(f16_down(w16, 128, 9, 64, 128, 600000), cudaErrorInvalidValue);
  EXPECT_EQ(launch_moe_f16_gate_up_silu(w16, 128, table_w, table_s, ids, ids, ids, 9, 9, 1, act16, 128, 100, 128,
                                        nullptr),
            cudaErrorInvalidValue);  // inter % 8
  EXPECT_FALSE(moe_f16_supported(128, 100));
  EXPECT_TRUE(moe_f16_supported(7168, 2048));
  // The prefill experts': k > 0, top_k >= 1, a segment; the grouped GEMM's whole 128-blocks of K, N a
  // multiple of 16, 64- or 128-row tiles, at most 65,535 tiles; no tiles: nothing to do.
  const auto* q8 = reinterpret_cast<const uint8_t*>(some);
  auto* out8 = reinterpret_cast<uint8_t*>(some + 512);
  EXPECT_EQ(launch_moe_gather_quant(some, ids, 8, ids, 4, out8, some, 4, 0, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_moe_gather_quant(some, ids, 0, ids, 4, out8, some, 4, 128, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_moe_silu_quant(w16, ids, 0, out8, some, 4, 128, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(launch_moe_silu_quant(w16, ids, 4, out8, some, 0, 128, nullptr), cudaSuccess);
  const auto* gemm_tiles = reinterpret_cast<const MoeGemmTile*>(ids);
  auto grouped = [&](int32_t num_tiles, int64_t tile_rows, int64_t n, int64_t k) {
    return launch_moe_grouped_gemm(q8, some, table_w, table_s, gemm_tiles, num_tiles, tile_rows, act16, n, k, nullptr);
  };
  EXPECT_EQ(grouped(0, 64, 256, 256), cudaSuccess);
  EXPECT_EQ(grouped(1, 64, 100, 256), cudaErrorInvalidValue);    // n % 16
  EXPECT_EQ(grouped(1, 64, 256, 200), cudaErrorInvalidValue);    // k % 128
  EXPECT_EQ(grouped(1, 32, 256, 256), cudaErrorInvalidValue);    // tile rows
  EXPECT_EQ(grouped(1, 256, 256, 256), cudaErrorInvalidValue);   // tile rows past three warpgroups
  EXPECT_EQ(grouped(65536, 64, 256, 256), cudaErrorInvalidValue);  // the grid's y

  // The tensor-core decode: groups 1..16, head_dim 64/128/256, 16-byte aligned q and caches, a
  // workspace when partitioned.
  auto decode_mma = [&](const float* q, const uint16_t* kv, int64_t heads, int64_t kv_heads, int64_t head_dim,
                        int64_t parts, float* workspace) {
    return launch_decode_attention_mma(q, kv, kv, i32, i32, nullptr, 1, i32, 1, 16, heads, kv_heads, head_dim, 0.1f,
                                       parts, 16, workspace, some + 512, nullptr);
  };
  EXPECT_EQ(launch_decode_attention_mma(some, w16, w16, i32, i32, nullptr, 0, i32, 1, 16, 32, 8, 128, 0.1f, 1, 16,
                                        nullptr, some + 512, nullptr),
            cudaSuccess);  // nothing to do
  EXPECT_EQ(decode_mma(some, w16, 34, 2, 128, 1, nullptr), cudaErrorInvalidValue);  // group 17
  EXPECT_EQ(decode_mma(some, w16, 12, 8, 128, 1, nullptr), cudaErrorInvalidValue);  // heads % kv_heads
  EXPECT_EQ(decode_mma(some, w16, 32, 8, 96, 1, nullptr), cudaErrorInvalidValue);   // head_dim 96
  EXPECT_EQ(decode_mma(some, w16, 32, 8, 32, 1, nullptr), cudaErrorInvalidValue);   // head_dim 32
  EXPECT_EQ(decode_mma(some, w16, 32, 8, 128, 2, nullptr), cudaErrorInvalidValue);  // no workspace
  EXPECT_EQ(decode_mma(some, w16, 32, 8, 128, kDecodeMaxPartitions + 1, some), cudaErrorInvalidValue);
  EXPECT_EQ(decode_mma(some + 1, w16, 32, 8, 128, 1, nullptr), cudaErrorInvalidValue);  // q misaligned
  EXPECT_EQ(decode_mma(some, w16 + 1, 32, 8, 128, 1, nullptr), cudaErrorInvalidValue);  // cache misaligned
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  cudaFree(some);
}

// The tensor-core decode's partition counts (host arithmetic, no GPU needed): enough CTAs for two
// per SM, none shorter than two 64-key tiles, none empty for the longest context.
TEST(KernelLaunchers, DecodeMmaPartitionCounts) {
  using namespace kernels;
  if (std::getenv("TROUPE_DECODE_MIN_TILES")) GTEST_SKIP() << "TROUPE_DECODE_MIN_TILES changes the counts";
  EXPECT_EQ(decode_mma_num_partitions(64, 8, 1024, 132), 1);   // batch 64: 512 CTAs already
  EXPECT_EQ(decode_mma_num_partitions(1, 8, 1024, 132), 8);    // batch 1: two tiles each
  EXPECT_EQ(decode_mma_num_partitions(1, 8, 3000, 132), 23);   // 184 CTAs of 131 keys
  EXPECT_EQ(decode_mma_num_partitions(1, 8, 9000, 132), 33);   // 264 CTAs of 273 keys
  EXPECT_EQ(decode_mma_num_partitions(16, 8, 4096, 132), 3);   // 384 CTAs
  EXPECT_EQ(decode_mma_num_partitions(1, 8, 64, 132), 1);      // one tile
  EXPECT_EQ(decode_mma_num_partitions(1, 1, 100000, 132), kDecodeMaxPartitions);
  EXPECT_EQ(decode_mma_num_partitions(0, 8, 1024, 132), 1);
  for (int64_t tokens : {1, 3, 16, 64, 200})
    for (int64_t context : {1, 17, 65, 1024, 3000, 40000}) {
      const int64_t parts = decode_mma_num_partitions(tokens, 8, context, 132);
      ASSERT_GE(parts, 1);
      ASSERT_LE(parts, kDecodeMaxPartitions);
      const int64_t keys = decode_partition_keys(context, parts);
      EXPECT_GE(keys * parts, context) << tokens << " x " << context;         // every key covered
      EXPECT_LT(keys * (parts - 1), context) << tokens << " x " << context;   // the last one not empty
      if (parts > 1) {
        EXPECT_GE(keys, kDecodeMmaMinPartitionTiles * kDecodeMmaTileKeys) << tokens << " x " << context;
      }
    }
}

}  // namespace
}  // namespace troupe::backend_ops
