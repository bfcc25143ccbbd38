// The production-shape fixtures (head_dim 64 / 128 / 256, GQA 4:1, prompts of 1, 300 and 1,100
// tokens, so decode splits the context and prefill runs the tensor-core kernel) through the CUDA
// backend, eager and through step graphs (tools/make_production_fixtures.py; the CPU twin is
// tests/unit/production_shapes_test.cpp):
// - fp32 weights against transformers: the kept prompt logits and 31 teacher-forced decode steps
//   within 2e-3, and transformers' 32 greedy tokens;
// - bf16 weights against the same bf16-rounded weights computed in fp32 on the CPU backend (which the
//   fp32 tests tie to transformers within 2e-3): that isolates the runtime's own rounding, since the
//   rounding of the weights alone already moves the logits up to 0.071 per unit of logit RMS from
//   transformers' fp32 ones (measured, tests/unit/bf16_rounded_weights.hpp). Bounds below.
#include <gtest/gtest.h>

#include <cstdio>

#include "backends/cpu_backend.hpp"
#include "backends/cuda/cuda_backend.hpp"
#include "backends/graphed_model.hpp"
#include "engine/model_runner.hpp"
#include "tests/gpu/gpu_test_support.hpp"
#include "tests/unit/production_fixture.hpp"

namespace troupe::cuda {
namespace {

constexpr double kFp32Tolerance = 2e-3;

// Bounds for bf16 weights, per unit of the oracle's logit RMS (at least 1), on max |logit diff|
// over every row compared. The earlier single bound, 0.1 against transformers for weights and
// activations together, left the runtime 0.029 where the weights alone measure 0.071
// (llama-hd128-gqa4, 300 tokens, where the H200 reported 0.138 against a bound of 0.131).
// - The runtime against the CPU reference: its own rounding. Per layer it rounds to bf16 (unit
//   roundoff 2^-8, nearest even) the normed input of the q/k/v product (an error in q, k and v),
//   Q, K and V for the tensor-core attention (K and V in the cache), the softmax weights P, the o
//   product's input (prefill), the normed input of gate/up (an error in both) and the SiLU
//   product: 11 operands where the weights give 7 rounded matrices; plus the lm_head input where
//   the weights give embedding and lm_head. Independent errors of one size add in quadrature, so
//   its share should be about sqrt(11 / 7) = 1.25 times the weights' measured 0.071, i.e. 0.09;
//   the bound is 1.5 times the weights' bound, 0.15.
// - The runtime against transformers' fp32 logits: at most the sum of the two bounds (triangle
//   inequality), 0.25.
constexpr double kBf16RuntimePerRms = 1.5 * production::kWeightRoundingPerRms;
constexpr double kBf16TotalPerRms = production::kWeightRoundingPerRms + kBf16RuntimePerRms;

// One prompt's run against what it is held to; `reference` is the bf16-weight CPU run (bf16 only).
void judge(DType weights, const production::Prompt& p, const production::Run& run, const production::Run& reference,
           const std::string& what) {
  if (weights == DType::f32) {
    const double worst = production::max_diff_to_oracle(p, run);
    const production::Agreement a = production::agreement(p.decode_logits, run, 2 * kFp32Tolerance);
    EXPECT_LE(worst, kFp32Tolerance) << what;
    EXPECT_EQ(a.agreed, a.judged) << what;
    std::printf("f32 %s: max |logit diff| %.2e (bound %.2e), %d of %d clear decode steps agree\n", what.c_str(), worst,
                kFp32Tolerance, a.agreed, a.judged);
    return;
  }
  const double scale = std::max(1.0, production::rms(p.prompt_logits));
  const double runtime = production::max_diff(run, reference);
  const double total = production::max_diff_to_oracle(p, run);
  const double weights_alone = production::max_diff_to_oracle(p, reference);
  const production::Agreement a = production::agreement(reference.decode_logits, run, 2 * kBf16RuntimePerRms * scale);
  EXPECT_LE(runtime, kBf16RuntimePerRms * scale) << what << ": against the bf16-weight reference";
  EXPECT_LE(total, kBf16TotalPerRms * scale) << what << ": against transformers' fp32 logits";
  EXPECT_EQ(a.agreed, a.judged) << what;
  std::printf("bf16 %s: max |logit diff| to the bf16-weight reference %.2e (bound %.2e), to transformers %.2e "
              "(bound %.2e; the weights alone %.2e), %d of %d clear decode steps agree\n",
              what.c_str(), runtime, kBf16RuntimePerRms * scale, total, kBf16TotalPerRms * scale, weights_alone, a.agreed,
              a.judged);
}

void check(DType weights) {
  const auto dirs = production::fixture_dirs(troupe_source_dir());
  ASSERT_EQ(dirs.size(), 4u) << "tests/fixtures/production: run tools/make_production_fixtures.py";
  auto gpu = CudaBackend::create(0, weights);
  ASSERT_TRUE(gpu.ok()) << gpu.error().message;
  CpuBackend cpu(4);
  for (const auto& dir : dirs) {
    production::Fixture f;
    std::string why;
    ASSERT_TRUE(production::read_fixture(dir, f, why)) << why;
    auto inner = production::load(f, **gpu, nullptr);
    ASSERT_TRUE(inner.ok()) << dir << ": " << inner.error().message;
    StepGraphOptions options;
    options.max_model_len = 2048;
    GraphedModel graphed(std::move(inner.value()), **gpu, options);
    std::unique_ptr<Model> reference;  // bf16: the same rounded weights in fp32 on the CPU
    if (weights == DType::bf16) {
      auto loaded = production::load(f, cpu, nullptr, /*rounded_to_bf16=*/true);
      ASSERT_TRUE(loaded.ok()) << dir << ": " << loaded.error().message;
      reference = std::move(loaded.value());
    }
    for (const auto& p : f.prompts) {
      production::Run expected;
      if (reference) {
        auto run = production::forced_decode(*reference, cpu, p.ids, p.greedy);
        ASSERT_TRUE(run.ok()) << run.error().message;
        expected = std::move(run.value());
      }
      for (bool graphs : {false, true}) {
        Model& model = graphs ? static_cast<Model&>(graphed) : graphed.inner();
        auto run = production::forced_decode(model, **gpu, p.ids, p.greedy);
        ASSERT_TRUE(run.ok()) << run.error().message;
        EXPECT_EQ((*gpu)->take_error(), "");
        const std::string what = dir + " prompt of " + std::to_string(p.ids.size()) + (graphs ? ", graphs" : ", eager");
        judge(weights, p, run.value(), expected, what);
        if (weights == DType::f32) {
          auto greedy = greedy_generate(model, **gpu, p.ids, int64_t(p.greedy.size()));
          ASSERT_TRUE(greedy.ok()) << greedy.error().message;
          EXPECT_EQ(greedy->tokens, p.greedy) << what;
        }
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

TEST(ProductionShapesGpu, Bf16WeightsStayNearTheirFp32ReferenceEagerAndThroughGraphs) {
  TROUPE_REQUIRE_GPU();
  check(DType::bf16);
}

}  // namespace
}  // namespace troupe::cuda
