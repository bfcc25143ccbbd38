// The production-shape fixtures (head_dim 64 / 128 / 256, GQA 4:1, prompts up to 1,100 tokens;
// tools/make_production_fixtures.py) on the CPU backend against transformers: the dummy weights the
// script recomputed are the ones troupe loads (same names), the last 64 prompt positions' logits and
// 31 teacher-forced decode steps within 2e-3 (fp32 on both sides, 1,100-term softmax sums), and
// transformers' 32 greedy tokens; and the same models with their weights rounded to bf16 as the CUDA
// backend holds them, against the same oracle. The GPU twin is tests/gpu/production_shapes_test.cpp.
#include <gtest/gtest.h>

#include "backends/cpu_backend.hpp"
#include "engine/model_runner.hpp"
#include "tests/unit/production_fixture.hpp"

namespace troupe {
namespace {

constexpr double kFp32Tolerance = 2e-3;

TEST(ProductionShapes, CpuBackendMatchesTransformers) {
  const auto dirs = production::fixture_dirs(TROUPE_SOURCE_DIR);
  ASSERT_EQ(dirs.size(), 4u) << "tests/fixtures/production: run tools/make_production_fixtures.py on the GPU machine";
  CpuBackend cpu(2);
  for (const auto& dir : dirs) {
    production::Fixture f;
    std::string why;
    ASSERT_TRUE(production::read_fixture(dir, f, why)) << why;
    std::set<std::string> requested;
    auto model = production::load(f, cpu, &requested);
    ASSERT_TRUE(model.ok()) << dir << ": " << model.error().message;
    EXPECT_EQ(std::vector<std::string>(requested.begin(), requested.end()), f.weights) << dir;
    for (size_t i = 0; i < f.prompts.size(); ++i) {
      const production::Prompt& p = f.prompts[i];
      auto run = production::forced_decode(*model.value(), cpu, p.ids, p.greedy);
      ASSERT_TRUE(run.ok()) << run.error().message;
      const double worst = production::max_diff_to_oracle(p, run.value());
      EXPECT_LE(worst, kFp32Tolerance) << dir << " prompt of " << p.ids.size();
      auto greedy = greedy_generate(*model.value(), cpu, p.ids, int64_t(p.greedy.size()));
      ASSERT_TRUE(greedy.ok()) << greedy.error().message;
      EXPECT_EQ(greedy->tokens, p.greedy) << dir << " prompt of " << p.ids.size();
      std::printf("cpu %s prompt of %zu: max |logit diff| %.2e\n", std::filesystem::path(dir).filename().c_str(), p.ids.size(), worst);
    }
  }
}

// The reference's rounding is CudaBackend::upload_weight's: matrices to nearest even (ties to the
// even mantissa, so neither truncation nor ties away from zero), vectors untouched.
TEST(ProductionShapes, Bf16RoundedLoaderRoundsMatricesToNearestEven) {
  const std::vector<float> values = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f, 1.0f + 0x1p-8f + 0x1p-20f, -(1.0f + 3 * 0x1p-8f)};
  const WeightLoader loader = production::bf16_rounded([&](const std::string&, const std::vector<int64_t>& shape) {
    return Result<Tensor>(Tensor::from_f32(values, shape));
  });
  auto matrix = loader("w", {2, 2});
  auto vector = loader("norm.weight", {4});
  ASSERT_TRUE(matrix.ok() && vector.ok());
  EXPECT_EQ(matrix->to_f32_vector(), (std::vector<float>{1.0f, 1.0f + 0x1p-6f, 1.0f + 0x1p-7f, -(1.0f + 0x1p-6f)}));
  EXPECT_EQ(vector->to_f32_vector(), values);
}

// The bf16 weights the CUDA backend holds, computed in fp32: the share of the bf16 path's distance
// to transformers that comes from the weights alone (bf16_rounded_weights.hpp states its bound), and
// the oracle's token wherever its top-1 margin exceeds twice that bound.
TEST(ProductionShapes, Bf16RoundedWeightsStayNearTransformers) {
  const auto dirs = production::fixture_dirs(TROUPE_SOURCE_DIR);
  ASSERT_EQ(dirs.size(), 4u) << "tests/fixtures/production: run tools/make_production_fixtures.py on the GPU machine";
  CpuBackend cpu(2);
  for (const auto& dir : dirs) {
    production::Fixture f;
    std::string why;
    ASSERT_TRUE(production::read_fixture(dir, f, why)) << why;
    auto model = production::load(f, cpu, nullptr, /*rounded_to_bf16=*/true);
    ASSERT_TRUE(model.ok()) << dir << ": " << model.error().message;
    for (const production::Prompt& p : f.prompts) {
      auto run = production::forced_decode(*model.value(), cpu, p.ids, p.greedy);
      ASSERT_TRUE(run.ok()) << run.error().message;
      const double bound = production::kWeightRoundingPerRms * std::max(1.0, production::rms(p.prompt_logits));
      const double worst = production::max_diff_to_oracle(p, run.value());
      const production::Agreement a = production::agreement(p.decode_logits, run.value(), 2 * bound);
      const std::string what = std::filesystem::path(dir).filename().string() + " prompt of " + std::to_string(p.ids.size());
      EXPECT_LE(worst, bound) << what;
      EXPECT_EQ(a.agreed, a.judged) << what;
      std::printf("bf16-rounded weights on cpu, %s: max |logit diff| %.2e (bound %.2e), %d of %d clear decode steps agree\n",
                  what.c_str(), worst, bound, a.agreed, a.judged);
    }
  }
}

}  // namespace
}  // namespace troupe
