// prompt_logprobs on the CUDA backend (llama-tiny; the LM head over prompt positions shares the
// model code with the CPU): with 8-token chunks, a warm prefix cache, step graphs on and a decode
// of another request in the same steps, every prompt position's logprob is the CPU engine's to
// bf16 accuracy, and the prompt's token ranks as on the CPU where the gap to its neighbours is
// clear. Not run on the machine this was written on (no GPU).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <mutex>

#include "backends/build_engine.hpp"
#include "engine/llm_engine.hpp"
#include "tests/gpu/gpu_test_support.hpp"

namespace troupe {
namespace {

struct Ended {
  std::vector<int32_t> tokens;
  std::vector<PromptLogprob> prompt_logprobs;
};

std::map<std::string, Ended> run(ServingEngine& engine, const std::vector<GenerationRequest>& requests) {
  std::mutex mutex;
  std::condition_variable cv;
  std::map<std::string, Ended> ended;
  size_t num_done = 0;
  for (const GenerationRequest& request : requests) {
    const std::string id = request.request_id;
    EXPECT_TRUE(engine.submit(request, [&, id](const GenerationOutput& out) {
      std::lock_guard lock(mutex);
      Ended& e = ended[id];
      e.tokens.insert(e.tokens.end(), out.new_token_ids.begin(), out.new_token_ids.end());
      if (!out.prompt_logprobs.empty()) e.prompt_logprobs = out.prompt_logprobs;
      if (out.finish_reason != FinishReason::none) {
        ++num_done;
        cv.notify_all();
      }
    }).ok());
  }
  std::unique_lock lock(mutex);
  EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(120), [&] { return num_done == requests.size(); }));
  return ended;
}

std::unique_ptr<LlmEngine> make_engine(const std::string& device) {
  Config config;
  config.model = troupe_source_dir() + "/tests/fixtures/models/llama-tiny";
  config.device = device;
  config.num_threads = 2;
  config.num_kv_blocks = 256;
  config.block_size = 4;
  config.max_num_batched_tokens = 8;
  config.max_model_len = 256;
  auto engine = backends::build_engine(config);
  EXPECT_TRUE(engine.ok()) << engine.error().message;
  if (!engine.ok()) return nullptr;
  (*engine)->start();
  return std::move(engine.value());
}

TEST(PromptLogprobsGpu, MatchTheCpuEngineWithChunksCacheAndGraphs) {
  TROUPE_REQUIRE_GPU();
  std::vector<int32_t> prompt;
  for (int i = 0; i < 37; ++i) prompt.push_back(int32_t((i * 97 + 13) % 500));
  std::vector<GenerationRequest> requests;
  GenerationRequest decode;  // decodes in graphed steps while the prompt's chunks run
  decode.request_id = "decode";
  decode.prompt_ids = {5, 6, 7};
  decode.params.temperature = 0.0;
  decode.params.max_tokens = 24;
  decode.params.ignore_eos = true;
  requests.push_back(decode);
  GenerationRequest scored;
  scored.request_id = "scored";
  scored.prompt_ids = prompt;
  scored.params.temperature = 0.0;
  scored.params.max_tokens = 2;
  scored.params.ignore_eos = true;
  scored.params.prompt_logprobs = 3;
  requests.push_back(scored);

  auto cpu = make_engine("cpu");
  auto gpu = make_engine("cuda");
  ASSERT_TRUE(cpu && gpu);
  GenerationRequest warm = scored;  // the prompt in the GPU engine's prefix cache first
  warm.request_id = "warm";
  warm.params.prompt_logprobs = -1;
  run(*gpu, {warm});
  auto want = run(*cpu, requests);
  auto got = run(*gpu, requests);
  const auto& a = got["scored"].prompt_logprobs;
  const auto& b = want["scored"].prompt_logprobs;
  ASSERT_EQ(a.size(), prompt.size() - 1);
  ASSERT_EQ(b.size(), prompt.size() - 1);
  for (size_t j = 0; j < a.size(); ++j) {
    EXPECT_EQ(a[j].token_id, prompt[j + 1]);
    EXPECT_NEAR(a[j].logprob, b[j].logprob, 0.05) << "position " << j + 1;
    ASSERT_EQ(a[j].top.size(), 3u);
    EXPECT_NEAR(a[j].top[0].second, b[j].top[0].second, 0.05) << "position " << j + 1;
  }
  EXPECT_TRUE(got["decode"].prompt_logprobs.empty());
  EXPECT_EQ(got["decode"].tokens.size(), 24u);
}

}  // namespace
}  // namespace troupe
