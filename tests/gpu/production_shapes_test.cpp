// The production-shape fixtures (head_dim 64 / 128 / 256, GQA 4:1, prompts of 1, 300 and 1,100
// tokens, so decode splits the context and prefill runs the tensor-core kernel) through the CUDA
// backend against transformers (tools/make_production_fixtures.py; the CPU twin is
// tests/unit/production_shapes_test.cpp):
// - fp32 weights, eager and through step graphs: the kept prompt logits and 31 teacher-forced decode
//   steps within 2e-3, and transformers' 32 greedy tokens;
// - bf16 weights, eager and through step graphs: logits within 0.1 per unit of the oracle's logit
//   RMS (at least 0.1: bf16 keeps 8 mantissa bits, ~0.4% per weight and activation, averaging down
//   over 128- to 1,100-term sums), and the oracle's token at every decode step whose top-1 margin
//   exceeds twice that bound (random models have near-ties; those steps are not judged).
#include <gtest/gtest.h>

#include <cstdio>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/graphed_model.hpp"
#include "engine/model_runner.hpp"
#include "tests/gpu/gpu_test_support.hpp"
#include "tests/unit/production_fixture.hpp"

namespace troupe::cuda {
namespace {

constexpr double kFp32Tolerance = 2e-3;
constexpr double kBf16PerRms = 0.1;

struct Checked {
  double worst = 0;        // max |logit diff| over the kept prompt rows and decode steps
  int judged = 0, agreed = 0;  // decode steps with a clear oracle margin, and those picking its token
};

Checked compare(const production::Prompt& p, const production::Run& run, double margin) {
  Checked c;
  for (size_t t = 0; t < p.prompt_logits.size(); ++t)
    c.worst = std::max(c.worst, production::max_abs_diff(run.prompt_logits.at(size_t(p.logits_from) + t), p.prompt_logits[t]));
  for (size_t s = 0; s < p.decode_logits.size(); ++s) {
    c.worst = std::max(c.worst, production::max_abs_diff(run.decode_logits.at(s), p.decode_logits[s]));
    if (production::top_margin(p.decode_logits[s]) > margin) {
      ++c.judged;
      c.agreed += production::argmax(run.decode_logits[s]) == production::argmax(p.decode_logits[s]);
    }
  }
  return c;
}

void check(DType weights) {
  const auto dirs = production::fixture_dirs(troupe_source_dir());
  ASSERT_EQ(dirs.size(), 4u) << "tests/fixtures/production: run tools/make_production_fixtures.py";
  auto gpu = CudaBackend::create(0, weights);
  ASSERT_TRUE(gpu.ok()) << gpu.error().message;
  for (const auto& dir : dirs) {
    production::Fixture f;
    std::string why;
    ASSERT_TRUE(production::read_fixture(dir, f, why)) << why;
    auto inner = production::load(f, **gpu, nullptr);
    ASSERT_TRUE(inner.ok()) << dir << ": " << inner.error().message;
    StepGraphOptions options;
    options.max_model_len = 2048;
    GraphedModel graphed(std::move(inner.value()), **gpu, options);
    for (const auto& p : f.prompts) {
      double bound = kFp32Tolerance;
      if (weights == DType::bf16) bound = kBf16PerRms * std::max(1.0, production::rms(p.prompt_logits));
      for (bool graphs : {false, true}) {
        Model& model = graphs ? static_cast<Model&>(graphed) : graphed.inner();
        auto run = production::forced_decode(model, **gpu, p.ids, p.greedy);
        ASSERT_TRUE(run.ok()) << run.error().message;
        EXPECT_EQ((*gpu)->take_error(), "");
        const Checked c = compare(p, run.value(), 2 * bound);
        const std::string what = dir + " prompt of " + std::to_string(p.ids.size()) + (graphs ? ", graphs" : ", eager");
        EXPECT_LE(c.worst, bound) << what;
        EXPECT_EQ(c.agreed, c.judged) << what;
        if (weights == DType::f32) {
          auto greedy = greedy_generate(model, **gpu, p.ids, int64_t(p.greedy.size()));
          ASSERT_TRUE(greedy.ok()) << greedy.error().message;
          EXPECT_EQ(greedy->tokens, p.greedy) << what;
        }
        std::printf("%s %s: max |logit diff| %.2e (bound %.2e), %d of %d clear decode steps agree\n",
                    std::string(dtype_name(weights)).c_str(), what.c_str(), c.worst, bound, c.agreed, c.judged);
      }
    }
    EXPECT_GT(graphed.num_replayed(), 0) << dir;
    EXPECT_EQ(graphed.num_dropped(), 0) << dir;
  }
}

TEST(ProductionShapesGpu, Fp32WeightsMatchTransformersEagerAndThroughGraphs) {
  TROUPE_REQUIRE_GPU();
  check(DType::f32);
}

TEST(ProductionShapesGpu, Bf16WeightsStayNearTransformersEagerAndThroughGraphs) {
  TROUPE_REQUIRE_GPU();
  check(DType::bf16);
}

}  // namespace
}  // namespace troupe::cuda
