// The DeepSeek-R1 serving fixture (tools/make_deepseek_r1_fixture.py): the real DeepSeek-V3
// tokenizer and vocabulary, the R1 chat template, a random DeepSeek-V3 model. Each chat of its
// oracle must render to the same prompt, encode to the same ids, give the same last-position
// logits (at the 128 ids the oracle kept) and the same greedy completion and text as transformers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "backends/cpu_backend.hpp"
#include "engine/model_runner.hpp"
#include "models/model_loader.hpp"
#include "text/chat_template.hpp"
#include "text/tokenizer.hpp"

namespace troupe {
namespace {

const std::string kDir = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/deepseek-r1-tiny";
constexpr int32_t kEos = 1;  // <｜end▁of▁sentence｜>

nlohmann::json chat_oracle() {
  std::ifstream in(kDir + "/chat_oracle.json");
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str());
}

bool tokenizer_present() {
  // tokenizer.json is a symlink into .cache/tokenizers (tools/fetch-tokenizers).
  return std::filesystem::exists(kDir + "/tokenizer.json");
}

TEST(DeepseekR1Fixture, TemplateAndTokenizerGiveTheOraclePrompts) {
  ASSERT_TRUE(tokenizer_present()) << kDir << "/tokenizer.json does not resolve: run tools/fetch-tokenizers";
  auto tmpl = ChatTemplate::load(kDir);
  ASSERT_TRUE(tmpl.ok()) << tmpl.error().message;
  auto tokenizer = Tokenizer::load(kDir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.error().message;
  const auto oracle = chat_oracle();
  ASSERT_EQ(oracle.size(), 3u);
  for (const auto& chat : oracle) {
    auto prompt = tmpl->render(chat["messages"], true, nullptr);
    ASSERT_TRUE(prompt.ok()) << prompt.error().message;
    EXPECT_EQ(prompt.value(), chat["prompt"].get<std::string>());
    EXPECT_EQ(tokenizer->encode(prompt.value()), chat["prompt_ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(tokenizer->decode(chat["completion_ids"].get<std::vector<int32_t>>(), true),
              chat["completion_text"].get<std::string>());
  }
  // R1's template drops an earlier turn's reasoning and opens the new one.
  const std::string third = oracle[2]["prompt"];
  EXPECT_EQ(third.find("The user greets me"), std::string::npos) << third;
  EXPECT_EQ(third.substr(third.size() - 8), "<think>\n");
}

TEST(DeepseekR1Fixture, LogitsAndGreedyCompletionsMatchTransformers) {
  CpuBackend backend(2);
  auto model = load_model(kDir, backend, LayerRange{});
  ASSERT_TRUE(model.ok()) << model.error().message;
  ASSERT_EQ(model.value()->config().vocab_size, 129280);
  for (const auto& chat : chat_oracle()) {
    const auto prompt = chat["prompt_ids"].get<std::vector<int32_t>>();
    const auto want = chat["completion_ids"].get<std::vector<int32_t>>();
    SCOPED_TRACE(chat["prompt"].get<std::string>());
    auto result = greedy_generate(*model.value(), backend, prompt, int64_t(want.size()), 16, true);
    ASSERT_TRUE(result.ok()) << result.error().message;
    // fp32 compute over the bf16 weights on both sides: summation order only (measured <= 6e-7).
    const auto& last = result->prompt_logits.back();
    const auto ids = chat["logit_ids"].get<std::vector<int64_t>>();
    const auto values = chat["logit_values"].get<std::vector<float>>();
    float max_diff = 0.0f;
    for (size_t i = 0; i < ids.size(); ++i) max_diff = std::max(max_diff, std::abs(last[size_t(ids[i])] - values[i]));
    EXPECT_LE(max_diff, 1e-5f);
    std::printf("[ oracle ] last-position logits at %zu ids: max |diff| %.3g\n", ids.size(), double(max_diff));
    EXPECT_EQ(std::max_element(last.begin(), last.end()) - last.begin(), ids[0]) << "argmax differs";
    std::vector<int32_t> got = result->tokens;
    if (const auto eos = std::find(got.begin(), got.end(), kEos); eos != got.end()) got.erase(eos + 1, got.end());
    EXPECT_EQ(got, want);
  }
}

}  // namespace
}  // namespace troupe
