// The production-shape fixtures (head_dim 64 / 128 / 256, GQA 4:1, prompts up to 1,100 tokens;
// tools/make_production_fixtures.py) on the CPU backend against transformers: the dummy weights the
// script recomputed are the ones troupe loads (same names), the last 64 prompt positions' logits and
// 31 teacher-forced decode steps within 2e-3 (fp32 on both sides, 1,100-term softmax sums), and
// transformers' 32 greedy tokens. The GPU twin is tests/gpu/production_shapes_test.cpp.
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
      double worst = 0;
      for (size_t t = 0; t < p.prompt_logits.size(); ++t)
        worst = std::max(worst, production::max_abs_diff(run->prompt_logits[size_t(p.logits_from) + t], p.prompt_logits[t]));
      for (size_t s = 0; s < p.decode_logits.size(); ++s)
        worst = std::max(worst, production::max_abs_diff(run->decode_logits.at(s), p.decode_logits[s]));
      EXPECT_LE(worst, kFp32Tolerance) << dir << " prompt of " << p.ids.size();
      auto greedy = greedy_generate(*model.value(), cpu, p.ids, int64_t(p.greedy.size()));
      ASSERT_TRUE(greedy.ok()) << greedy.error().message;
      EXPECT_EQ(greedy->tokens, p.greedy) << dir << " prompt of " << p.ids.size();
      std::printf("cpu %s prompt of %zu: max |logit diff| %.2e\n", std::filesystem::path(dir).filename().c_str(), p.ids.size(), worst);
    }
  }
}

}  // namespace
}  // namespace troupe
