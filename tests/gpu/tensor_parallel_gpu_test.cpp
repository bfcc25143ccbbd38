// Tensor parallel on GPUs (NcclCollective: ncclAllReduce after the row-parallel products and the
// vocabulary-parallel embedding, ncclAllGather of the LM head's logit blocks): every fixture at
// TP=2, 4 and 8 where the GPUs and its heads allow, fp32 weights, against the transformers oracle
// within the one-GPU bound (1e-3, CudaBackendModels.FixturesMatchTransformers) with the oracle's
// greedy tokens. Skips with fewer than 2 GPUs: NCCL refuses two ranks on one GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "backends/backend_factory.hpp"
#include "backends/stage_model_factory.hpp"
#include "engine/model_runner.hpp"
#include "models/tensor_parallel.hpp"
#include "runtime/model_config.hpp"
#include "runtime/safetensors_file.hpp"
#include "tests/gpu/gpu_test_support.hpp"
#include "tests/unit/fixture_oracle.hpp"

namespace troupe {
namespace {

TEST(TensorParallelGpu, FixturesMatchTransformers) {
  TROUPE_REQUIRE_GPU();
  const int num_gpus = cuda::query_devices().num_devices;
  if (num_gpus < 2) GTEST_SKIP() << "needs 2 GPUs (NCCL refuses two ranks on one GPU); found " << num_gpus;
  int64_t num_checked = 0;
  for (const auto& dir : fixture_dirs(FixtureSet::all)) {
    auto full = ModelConfig::load(dir);
    ASSERT_TRUE(full.ok());
    const Oracle oracle = read_oracle(dir);
    auto oracle_logits = SafetensorsFile::open(dir + "/oracle_logits.safetensors");
    ASSERT_TRUE(oracle_logits.ok());
    const int64_t vocab = full->vocab_size;
    for (int64_t size : {2, 4, 8}) {
      if (size > num_gpus || !tensor_parallel_config(full.value(), size).ok()) continue;
      const std::string name = dir.substr(dir.rfind('/') + 1);
      SCOPED_TRACE(name + " TP=" + std::to_string(size) + " (GPUs)");
      Config config;
      config.model = dir;
      config.device = "cuda";
      config.dtype = "float32";
      config.tensor_parallel_size = size;
      auto rank0 = backends::make_backend(config, 0, size);
      ASSERT_TRUE(rank0.ok()) << rank0.error().message;
      auto model = backends::load_stage_model(config, *rank0.value());
      ASSERT_TRUE(model.ok()) << model.error().message;
      float max_diff = 0.0f;
      for (size_t i = 0; i < oracle.prompts.size(); ++i) {
        auto result = greedy_generate(*model.value(), *rank0.value(), oracle.prompts[i], oracle.max_new_tokens, 16, true);
        ASSERT_TRUE(result.ok()) << result.error().message;
        EXPECT_EQ(result->tokens, oracle.greedy[i]) << "prompt " << i;
        const float* want = static_cast<const float*>(oracle_logits.value()->find("logits." + std::to_string(i))->data);
        for (size_t t = 0; t < result->prompt_logits.size(); ++t)
          for (int64_t v = 0; v < vocab; ++v)
            max_diff = std::max(max_diff, std::abs(result->prompt_logits[t][size_t(v)] - want[int64_t(t) * vocab + v]));
      }
      EXPECT_LE(max_diff, 1e-3f);
      std::printf("%s TP=%lld on GPUs: max |logit diff| vs transformers %.2e\n", name.c_str(),
                  static_cast<long long>(size), double(max_diff));
      ++num_checked;
    }
  }
  EXPECT_GE(num_checked, 5) << "too few fixture/TP combinations ran";
}

}  // namespace
}  // namespace troupe
