// Tensor parallel on the CPU backend (thread ranks summing through host memory): every fixture
// split over 2 and 4 ranks where its heads divide must still match its transformers oracle.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <thread>

#include "backends/stage_model_factory.hpp"
#include "backends/cpu_backend.hpp"
#include "runtime/model_config.hpp"
#include "engine/model_runner.hpp"
#include "runtime/safetensors_file.hpp"
#include "models/tensor_parallel.hpp"
#include "runtime/thread_collective.hpp"
#include "tests/unit/fixture_oracle.hpp"

namespace troupe {
namespace {

TEST(TensorParallel, ShardsMatchTheTransformersOracle) {
  int64_t num_checked = 0;
  for (const auto& dir : fixture_dirs(FixtureSet::dense)) {
    auto full = ModelConfig::load(dir);
    ASSERT_TRUE(full.ok());
    const Oracle oracle = read_oracle(dir);
    auto logits_file = SafetensorsFile::open(dir + "/oracle_logits.safetensors");
    ASSERT_TRUE(logits_file.ok());
    for (int64_t size : {2, 4}) {
      if (full->num_key_value_heads % size != 0 || full->intermediate_size % size != 0) continue;
      SCOPED_TRACE(dir + " TP=" + std::to_string(size));
      Config config;
      config.model = dir;
      config.tensor_parallel_size = size;
      config.num_threads = size;
      config.device = "cpu";
      CpuBackend rank0(1);
      auto model = backends::load_stage_model(config, rank0);
      ASSERT_TRUE(model.ok()) << model.error().message;
      const int64_t vocab = full->vocab_size;
      float max_diff = 0.0f;
      for (size_t i = 0; i < oracle.prompts.size(); ++i) {
        const auto& prompt = oracle.prompts[i];
        auto result = greedy_generate(*model.value(), rank0, prompt, oracle.max_new_tokens, 16, true);
        ASSERT_TRUE(result.ok()) << result.error().message;
        const float* want = static_cast<const float*>(logits_file.value()->find("logits." + std::to_string(i))->data);
        for (size_t t = 0; t < prompt.size(); ++t)
          for (int64_t v = 0; v < vocab; ++v)
            max_diff = std::max(max_diff, std::abs(result->prompt_logits[t][size_t(v)] - want[int64_t(t) * vocab + v]));
        EXPECT_EQ(result->tokens, oracle.greedy[i]) << "prompt " << i;
      }
      EXPECT_LE(max_diff, 1e-3f);
      std::printf("%s TP=%lld: max |logit diff| vs transformers %.2e\n", dir.substr(dir.rfind('/') + 1).c_str(),
                  static_cast<long long>(size), double(max_diff));
      ++num_checked;
    }
  }
  EXPECT_GE(num_checked, 4) << "too few fixture/TP combinations ran";
}

TEST(TensorParallel, SizesThatDoNotDivideTheHeadsAreRefusedByName) {
  auto full = ModelConfig::load(std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny");
  ASSERT_TRUE(full.ok());
  auto three = tensor_parallel_config(full.value(), 3);
  ASSERT_FALSE(three.ok());
  EXPECT_NE(three.error().message.find("num_attention_heads"), std::string::npos) << three.error().message;
  auto four = tensor_parallel_config(full.value(), 4);  // 4 heads, but 2 key/value heads
  ASSERT_FALSE(four.ok());
  EXPECT_NE(four.error().message.find("num_key_value_heads"), std::string::npos) << four.error().message;
}

TEST(TensorParallel, ARankThatNeverArrivesTimesOutInsteadOfHanging) {
  auto ranks = make_thread_collectives(2, std::chrono::milliseconds(200));
  Tensor t = Tensor::from_f32({1, 2, 3}, {3});
  Status alone = ranks[0]->all_reduce_sum(t);
  EXPECT_EQ(alone.error().code, ErrorCode::timeout);
  EXPECT_EQ(ranks[1]->all_reduce_sum(t).error().code, ErrorCode::unavailable) << "the group stays aborted";
}

TEST(TensorParallel, ThreadAllReduceSumsEveryRank) {
  auto ranks = make_thread_collectives(3);
  std::vector<Tensor> parts;
  for (int r = 0; r < 3; ++r) parts.push_back(Tensor::from_f32({float(r), 10.0f * float(r), 1.0f, -2.0f, 0.5f}, {5}));
  std::vector<std::thread> threads;
  std::vector<Status> results(3, Status::success());
  for (int r = 0; r < 3; ++r)
    threads.emplace_back([&, r] { results[size_t(r)] = ranks[size_t(r)]->all_reduce_sum(parts[size_t(r)]); });
  for (auto& t : threads) t.join();
  for (int r = 0; r < 3; ++r) {
    ASSERT_TRUE(results[size_t(r)].ok());
    EXPECT_EQ(parts[size_t(r)].data<float>()[0], 3.0f);
    EXPECT_EQ(parts[size_t(r)].data<float>()[1], 30.0f);
    EXPECT_EQ(parts[size_t(r)].data<float>()[2], 3.0f);
    EXPECT_EQ(parts[size_t(r)].data<float>()[3], -6.0f);
    EXPECT_EQ(parts[size_t(r)].data<float>()[4], 1.5f);
  }
}

}  // namespace
}  // namespace troupe
