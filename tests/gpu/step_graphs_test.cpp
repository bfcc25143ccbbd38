// Step graphs (CUDA graphs) on the GPU: replayed decode steps give the eager steps' logits, greedy
// decoding through graphs reproduces the transformers oracle's tokens, and nothing falls back.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/graphed_model.hpp"
#include "models/model_loader.hpp"
#include "engine/model_runner.hpp"
#include "tests/gpu/gpu_test_support.hpp"
#include "tests/unit/fixture_oracle.hpp"

namespace troupe::cuda {
namespace {

namespace fs = std::filesystem;

std::string tiny_model() { return troupe_source_dir() + "/tests/fixtures/models/llama-tiny"; }

struct Seq {
  std::vector<int32_t> table;
  int32_t context = 0;
};

// Steps of `active` sequences (a decode token each, or the prompt when the context is 0).
ForwardBatch step_of(std::vector<Seq>& seqs, const std::vector<size_t>& active, const std::vector<int32_t>& prompts,
                     int32_t salt) {
  ForwardBatch batch;
  for (size_t s : active) {
    Seq& q = seqs[s];
    const int32_t n = q.context == 0 ? prompts[s] : 1;
    for (int32_t i = 0; i < n; ++i) {
      batch.token_ids.push_back(int32_t((salt * 131 + s * 17 + q.context + i) % 250));
      batch.positions.push_back(q.context + i);
    }
    q.context += n;
    batch.seqs.push_back({n, q.context, &q.table, true});
  }
  return batch;
}

// The largest |eager - replayed| logit of a step, and the largest |eager| logit.
struct LogitGap {
  double diff = 0, scale = 0;
};
LogitGap logit_gap(CudaBackend& backend, const Tensor& want, const Tensor& got) {
  const std::vector<float> x = backend.to_host(want).to_f32_vector();
  const std::vector<float> y = backend.to_host(got).to_f32_vector();
  LogitGap gap;
  for (size_t i = 0; i < x.size(); ++i) {
    gap.diff = std::max(gap.diff, double(std::fabs(x[i] - y[i])));
    gap.scale = std::max(gap.scale, double(std::fabs(x[i])));
  }
  return gap;
}

// Replayed steps against eager ones on the same batches, for fp32 and bf16 weights. Graph steps
// split each context into partitions per token (eager ones by the step's longest context), so
// fp32 sums are ordered differently: with fp32 weights logits agree within 1e-3 (they are O(1)
// here); on the bf16 backend such a reordering can flip the bf16 rounding of an activation between
// layers, so there they agree within one bf16 rounding step (2^-8) of the largest logit, the
// DeepSeek test's bound below. (1e-3 for both failed on the H200 at 1.21e-3 for bf16, step 6, once
// the prefill kernel's change moved the data.) bf16 once more with TROUPE_L2_PREFETCH=1: the o
// weights' reads ahead on a second stream (CudaBackend::prefetch_weight) join the recordings, which
// still replay to the eager logits.
TEST(StepGraphs, ReplayedDecodeStepsMatchEagerSteps) {
  TROUPE_REQUIRE_GPU();
  struct Run {
    DType dtype;
    bool prefetch;
  };
  for (const Run run : {Run{DType::f32, false}, Run{DType::bf16, false}, Run{DType::bf16, true}}) {
    const DType dtype = run.dtype;
    SCOPED_TRACE(run.prefetch ? "TROUPE_L2_PREFETCH=1" : "no prefetch");
    if (run.prefetch) ::setenv("TROUPE_L2_PREFETCH", "1", 1);
    auto gpu = CudaBackend::create(0, dtype);
    ASSERT_TRUE(gpu.ok()) << gpu.error().message;
    CudaBackend& backend = **gpu;
    auto plain = load_model(tiny_model(), backend);
    auto inner = load_model(tiny_model(), backend);
    ASSERT_TRUE(plain.ok() && inner.ok());
    StepGraphOptions options;
    options.max_batch = 16;
    options.max_model_len = 512;
    GraphedModel graphed(std::move(inner.value()), backend, options);
    const int64_t blocks = 96, block_size = 16;
    auto plain_cache = backend.create_kv_cache((*plain)->kv_cache_spec(blocks, block_size));
    auto graph_cache = backend.create_kv_cache(graphed.kv_cache_spec(blocks, block_size));
    ASSERT_TRUE(plain_cache.ok() && graph_cache.ok());
    const std::vector<int32_t> prompts = {5, 17, 9, 30, 2, 64, 3, 11, 40, 7};
    std::vector<Seq> a(prompts.size()), b(prompts.size());
    for (size_t s = 0; s < prompts.size(); ++s)
      for (int32_t k = 0; k < 8; ++k) a[s].table.push_back(int32_t(s * 8 + size_t(k)));
    b = a;
    const std::vector<std::vector<size_t>> schedule = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {0, 1, 2}, {0}, {0, 1, 2, 3, 4}, {3}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9},
        {0, 1, 2},                     {9, 8, 7, 6, 5, 4, 3, 2, 1}, {0}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, {2, 4}};
    double worst = 0;
    for (size_t k = 0; k < schedule.size(); ++k) {
      const ForwardBatch want_batch = step_of(a, schedule[k], prompts, int32_t(k));
      const ForwardBatch got_batch = step_of(b, schedule[k], prompts, int32_t(k));
      auto want = (*plain)->forward(want_batch, plain_cache.value());
      auto got = graphed.forward(got_batch, graph_cache.value());
      ASSERT_TRUE(want.ok() && got.ok()) << "step " << k;
      ASSERT_EQ(got->shape(), want->shape());
      const LogitGap gap = logit_gap(backend, want.value(), got.value());
      const double bound = dtype == DType::f32 ? 1e-3 : std::ldexp(gap.scale, -8);
      EXPECT_LE(gap.diff, bound) << dtype_name(dtype) << " step " << k;
      worst = std::max(worst, gap.diff);
      EXPECT_EQ(backend.take_error(), "");
    }
    ::unsetenv("TROUPE_L2_PREFETCH");
    EXPECT_EQ(graphed.num_dropped(), 0);
    EXPECT_GE(graphed.num_recorded(), 4);  // buckets 4, 1, 8 (5 rows), 16 (9 and 10 rows), 2
    EXPECT_GE(graphed.num_replayed(), 3);
    // Each layer's o weight once a recording of up to Backend::kPrefetchMaxTokens rows (1, 2, 4, 8).
    if (run.prefetch) {
      EXPECT_GT(backend.prefetches_recorded(), 0);
    } else {
      EXPECT_EQ(backend.prefetches_recorded(), 0);
    }
    std::printf("%s%s: %lld graphs recorded, %lld steps replayed, %lld prefetches recorded, max |logit diff| vs eager "
                "%.2e\n",
                std::string(dtype_name(dtype)).c_str(), run.prefetch ? " (L2 prefetch)" : "",
                (long long)graphed.num_recorded(), (long long)graphed.num_replayed(),
                (long long)backend.prefetches_recorded(), worst);
  }
}

// DeepSeek-V3 decode steps through graphs against eager ones. With FP8 experts on the bf16 backend
// (troupe-demo-fp8: moe_intermediate 128, so gate and up fuse into one block-scaled weight) the MoE
// layers take the grouped path (nothing read on the host), so every decode step records;
// the MLA decode kernel then splits each token's own context (eager: by the step's longest), which
// reorders fp32 sums, and on the bf16 backend such a difference can flip the bf16 rounding of an
// activation between layers: logits agree within one bf16 rounding step (2^-8) of their largest
// magnitude (a wrong partition or a lost key is off by O(1)). (A first bound of 1e-3, from fp32
// reordering alone, failed on the H200 at up to 2.6e-3: it left out the bf16 activations.) With bf16 experts the per-expert loop reads the routing on the host:
// those steps are dropped from recording and run eagerly, with the same answers. The FP8 model once
// more with TROUPE_L2_PREFETCH=1 (kv_b ahead of the unabsorb, the shared expert's gate_up beside
// the routing): the same bound.
TEST(StepGraphs, DeepseekDecodeStepsReplayAsEagerOnes) {
  TROUPE_REQUIRE_GPU();
  struct Run {
    const char* name;
    bool prefetch;
  };
  for (const Run run : {Run{"troupe-demo-fp8", false}, Run{"deepseek-v3-tiny", false}, Run{"troupe-demo-fp8", true}}) {
    const char* name = run.name;
    SCOPED_TRACE(std::string(name) + (run.prefetch ? " TROUPE_L2_PREFETCH=1" : ""));
    if (run.prefetch) ::setenv("TROUPE_L2_PREFETCH", "1", 1);
    const std::string dir = troupe_source_dir() + "/tests/fixtures/models/" + name;
    const bool grouped = std::string(name).find("fp8") != std::string::npos;
    auto gpu = CudaBackend::create(0, DType::bf16);
    ASSERT_TRUE(gpu.ok()) << gpu.error().message;
    CudaBackend& backend = **gpu;
    auto plain = load_model(dir, backend);
    auto inner = load_model(dir, backend);
    ASSERT_TRUE(plain.ok() && inner.ok());
    ASSERT_TRUE((*inner)->supports_step_graphs());
    StepGraphOptions options;
    options.max_batch = 16;
    options.max_model_len = 512;
    GraphedModel graphed(std::move(inner.value()), backend, options);
    const int64_t blocks = 96, block_size = 16;
    auto plain_cache = backend.create_kv_cache((*plain)->kv_cache_spec(blocks, block_size));
    auto graph_cache = backend.create_kv_cache(graphed.kv_cache_spec(blocks, block_size));
    ASSERT_TRUE(plain_cache.ok() && graph_cache.ok());
    const std::vector<int32_t> prompts = {5, 17, 9, 30, 2, 64, 3, 11};
    std::vector<Seq> a(prompts.size()), b(prompts.size());
    for (size_t s = 0; s < prompts.size(); ++s)
      for (int32_t k = 0; k < 8; ++k) a[s].table.push_back(int32_t(s * 8 + size_t(k)));
    b = a;
    const std::vector<std::vector<size_t>> schedule = {{0, 1, 2, 3, 4, 5, 6, 7}, {0, 1, 2}, {0}, {0, 1, 2, 3, 4},
                                                       {3}, {0, 1, 2, 3, 4, 5, 6, 7}, {0}, {7, 6, 5, 4, 3, 2, 1}};
    double worst = 0;
    for (size_t k = 0; k < schedule.size(); ++k) {
      const ForwardBatch want_batch = step_of(a, schedule[k], prompts, int32_t(k));
      const ForwardBatch got_batch = step_of(b, schedule[k], prompts, int32_t(k));
      auto want = (*plain)->forward(want_batch, plain_cache.value());
      auto got = graphed.forward(got_batch, graph_cache.value());
      ASSERT_TRUE(want.ok() && got.ok()) << "step " << k;
      ASSERT_EQ(got->shape(), want->shape());
      const LogitGap gap = logit_gap(backend, want.value(), got.value());
      EXPECT_LE(gap.diff, 0x1p-8 * gap.scale) << "step " << k;
      worst = std::max(worst, gap.diff / std::max(gap.scale, 1e-30));
      EXPECT_EQ(backend.take_error(), "");
    }
    ::unsetenv("TROUPE_L2_PREFETCH");
    EXPECT_EQ(backend.prefetches_recorded() > 0, run.prefetch);
    if (grouped) {
      EXPECT_EQ(graphed.num_dropped(), 0);
      EXPECT_GE(graphed.num_replayed(), 3);
    } else {
      EXPECT_GT(graphed.num_dropped(), 0);
      EXPECT_EQ(graphed.num_replayed(), 0);
    }
    std::printf("%s: %lld graphs recorded, %lld steps replayed, %lld buckets dropped, max |logit diff| vs eager "
                "%.2e of the largest logit\n",
                name, (long long)graphed.num_recorded(), (long long)graphed.num_replayed(),
                (long long)graphed.num_dropped(), worst);
  }
}

// Greedy decoding through graphs (fp32 weights) gives the oracle's tokens on every fixture.
TEST(StepGraphs, GreedyTokensThroughGraphsMatchTransformers) {
  TROUPE_REQUIRE_GPU();
  auto gpu = CudaBackend::create(0, DType::f32);
  ASSERT_TRUE(gpu.ok()) << gpu.error().message;
  int checked = 0;
  for (const auto& e : fs::directory_iterator(fs::path(troupe_source_dir()) / "tests/fixtures/models")) {
    if (!fs::exists(e.path() / "oracle.json") || is_deepseek_fixture(e.path())) continue;
    std::ifstream in(e.path() / "oracle.json");
    std::stringstream text;
    text << in.rdbuf();
    const auto oracle = nlohmann::json::parse(text.str());
    auto inner = load_model(e.path().string(), **gpu);
    ASSERT_TRUE(inner.ok()) << inner.error().message;
    StepGraphOptions options;
    options.max_model_len = 1024;
    GraphedModel graphed(std::move(inner.value()), **gpu, options);
    const auto prompts = oracle.at("prompts").get<std::vector<std::vector<int32_t>>>();
    const auto greedy = oracle.at("greedy").get<std::vector<std::vector<int32_t>>>();
    for (size_t i = 0; i < prompts.size(); ++i) {
      auto result = greedy_generate(graphed, **gpu, prompts[i], int64_t(greedy[i].size()), 16, false);
      ASSERT_TRUE(result.ok()) << result.error().message;
      EXPECT_EQ(result->tokens, greedy[i]) << e.path() << " prompt " << i;
      ++checked;
    }
    EXPECT_EQ(graphed.num_dropped(), 0);
    EXPECT_GT(graphed.num_replayed(), 0);
    EXPECT_EQ((*gpu)->take_error(), "");
  }
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace troupe::cuda
