// The decode step's norms and residual adds inside the FP8 products (CudaBackend::rmsnorm_linear,
// linear_add: kernels/fp8_gemv_f16's normed staging and add store) against the lazy adds of
// add_rmsnorm (TROUPE_RESIDUAL_FUSION=0), on a two-layer model of Llama-3-8B's widths with dummy
// FP8 block weights (so the f16 kernel takes every product), eagerly and through step graphs.
//
// Bound: the fused norm sums its squares in another order than the rmsnorm kernel, so its scale
// may differ in the last bit and a normed activation may round to the neighbouring bf16 (2^-8
// relative); such flips move logits far less than one bf16 step of the largest logit, the bound
// the step-graph tests use for the same kind of reordering. A lost norm, a missed or doubled add
// or a wrong token's scale moves them by O(1).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/graphed_model.hpp"
#include "models/model_loader.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe::cuda {
namespace {

namespace fs = std::filesystem;

// Llama-3-8B's widths (q/k/v 6144 x 4096, gate_up 28672 x 4096, down 4096 x 14336), two layers,
// a short vocabulary, FP8 128 x 128 blocks.
std::string write_config() {
  const fs::path dir = fs::temp_directory_path() / ("troupe-residual-forms-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << R"({
  "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
  "intermediate_size": 14336, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
  "num_hidden_layers": 2, "vocab_size": 4096, "rms_norm_eps": 1e-05, "rope_theta": 500000.0,
  "max_position_embeddings": 8192, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
                          "weight_block_size": [128, 128]}})";
  return dir.string();
}

struct Gap {
  double diff = 0, scale = 0;
};
Gap gap_of(CudaBackend& gpu, const Tensor& a, const Tensor& b) {
  const std::vector<float> x = gpu.to_host(a).to_f32_vector(), y = gpu.to_host(b).to_f32_vector();
  Gap g;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    g.diff = std::max(g.diff, double(std::fabs(x[i] - y[i])));
    g.scale = std::max(g.scale, double(std::fabs(x[i])));
  }
  return g;
}

// A step of every sequence: its prompt (context 0) or one decode token.
ForwardBatch step_of(std::vector<std::vector<int32_t>>& tables, std::vector<int32_t>& contexts, int32_t salt) {
  ForwardBatch batch;
  for (size_t s = 0; s < tables.size(); ++s) {
    const int32_t n = contexts[s] == 0 ? 37 + int32_t(s) * 20 : 1;
    for (int32_t i = 0; i < n; ++i) {
      batch.token_ids.push_back(int32_t((salt * 131 + int32_t(s) * 17 + contexts[s] + i) % 4096));
      batch.positions.push_back(contexts[s] + i);
    }
    contexts[s] += n;
    batch.seqs.push_back({n, contexts[s], &tables[s], true});
  }
  return batch;
}

TEST(ResidualFormsGpu, FusedDecodeStepsMatchTheLazyAddsOnFp8Weights) {
  TROUPE_REQUIRE_GPU();
  const std::string dir = write_config();
  auto created = CudaBackend::create(0, DType::bf16);
  ASSERT_TRUE(created.ok()) << created.error().message;
  CudaBackend& gpu = *created.value();
  auto eager = load_model_with_format(dir, "dummy", gpu);
  auto inner = load_model_with_format(dir, "dummy", gpu);  // the same seeded weights
  ASSERT_TRUE(eager.ok() && inner.ok()) << (eager.ok() ? inner.error().message : eager.error().message);
  ASSERT_TRUE(gpu.fuses_residual_norms(3)) << "the model on FP8 weights should ask for the FP8 decode";
  StepGraphOptions options;
  options.max_batch = 8;
  options.max_model_len = 1024;
  GraphedModel graphed(std::move(inner.value()), gpu, options);

  const int64_t blocks = 64, block_size = 16;
  auto lazy_cache = gpu.create_kv_cache((*eager)->kv_cache_spec(blocks, block_size));
  auto fused_cache = gpu.create_kv_cache((*eager)->kv_cache_spec(blocks, block_size));
  auto graph_cache = gpu.create_kv_cache(graphed.kv_cache_spec(blocks, block_size));
  ASSERT_TRUE(lazy_cache.ok() && fused_cache.ok() && graph_cache.ok());
  std::vector<std::vector<int32_t>> tables(3);
  for (size_t s = 0; s < tables.size(); ++s)
    for (int32_t k = 0; k < 8; ++k) tables[s].push_back(int32_t(s * 8 + size_t(k)));
  auto lazy_tables = tables, fused_tables = tables, graph_tables = tables;
  std::vector<int32_t> lazy_ctx(3, 0), fused_ctx(3, 0), graph_ctx(3, 0);

  for (int32_t step = 0; step < 6; ++step) {  // step 0: the prompts (the lazy path on all three)
    ::setenv("TROUPE_RESIDUAL_FUSION", "0", 1);
    auto lazy = (*eager)->forward(step_of(lazy_tables, lazy_ctx, step), lazy_cache.value());
    ::unsetenv("TROUPE_RESIDUAL_FUSION");
    auto fused = (*eager)->forward(step_of(fused_tables, fused_ctx, step), fused_cache.value());
    auto replayed = graphed.forward(step_of(graph_tables, graph_ctx, step), graph_cache.value());
    ASSERT_TRUE(lazy.ok() && fused.ok() && replayed.ok()) << "step " << step;
    const Gap fused_gap = gap_of(gpu, lazy.value(), fused.value());
    const Gap graph_gap = gap_of(gpu, fused.value(), replayed.value());
    EXPECT_GT(fused_gap.scale, 0.0) << "step " << step;
    EXPECT_LE(fused_gap.diff, std::ldexp(fused_gap.scale, -8)) << "fused against lazy, step " << step;
    EXPECT_LE(graph_gap.diff, std::ldexp(graph_gap.scale, -8)) << "replayed against eager, step " << step;
    std::printf("step %d: max |logit| %.3g, fused vs lazy %.2e, replayed vs eager %.2e\n", step, fused_gap.scale,
                fused_gap.diff, graph_gap.diff);
    EXPECT_EQ(gpu.take_error(), "");
  }
  EXPECT_EQ(graphed.num_dropped(), 0);
  EXPECT_GE(graphed.num_replayed(), 3);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace troupe::cuda
