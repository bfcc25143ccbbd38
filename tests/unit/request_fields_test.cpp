// vLLM's request fields below http/: logit_bias and min_tokens in the Sampler,
// skip_special_tokens / spaces_between_special_tokens in the detokenizer over the real tokenizers,
// chat_template_kwargs and continue_final_message in the real chat templates.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/sampler.hpp"
#include "engine/serving_engine.hpp"
#include "text/chat_template.hpp"
#include "tokenizer_test_support.hpp"

namespace troupe {
namespace {

int32_t sample(Sampler& sampler, const std::vector<float>& logits, const SamplingParams& p,
               const std::vector<int32_t>* output_ids = nullptr, SequenceRng* rng = nullptr) {
  auto t = sampler.sample_row(logits.data(), int64_t(logits.size()), SamplerRow{&p, nullptr, output_ids, rng});
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
  return t.ok() ? t->token_id : -1;
}

TEST(RequestFieldsSampler, LogitBiasMovesTheGreedyChoiceAndTheLogprobs) {
  Sampler sampler;
  SamplingParams p;
  p.temperature = 0.0;
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f, 0.0f};
  EXPECT_EQ(sample(sampler, logits, p), 1);
  p.logit_bias = {{2, 1.5f}};  // 2 + 1.5 > 3
  EXPECT_EQ(sample(sampler, logits, p), 2);
  p.logit_bias = {{1, -100.0f}, {3, 2.5f}};  // 1 banned; 3 -> 2.5 beats 2
  p.logprobs = 1;
  auto t = sampler.sample_row(logits.data(), 4, SamplerRow{&p});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->token_id, 3);
  // The logprob is of the biased logits, as vLLM reports it.
  const double norm = std::exp(1.0) + std::exp(-97.0) + std::exp(2.0) + std::exp(2.5);
  EXPECT_NEAR(t->logprob, 2.5 - std::log(norm), 1e-5);
  // The input logits are left alone.
  EXPECT_EQ(logits[1], 3.0f);
}

TEST(RequestFieldsSampler, LogitBiasMinus100BansATokenWhenSampling) {
  Sampler sampler;
  SamplingParams p;
  p.temperature = 1.0;
  p.logit_bias = {{0, -100.0f}};
  SequenceRng rng(7);
  const std::vector<float> logits = {5.0f, 0.0f, 0.0f};  // token 0 has 98% of the mass unbiased
  for (int i = 0; i < 500; ++i) EXPECT_NE(sample(sampler, logits, p, nullptr, &rng), 0);
}

TEST(RequestFieldsSampler, LogitBiasOutsideTheVocabularyIsAnErrorNotACrash) {
  Sampler sampler;
  SamplingParams p;
  p.logit_bias = {{4, 1.0f}};
  const std::vector<float> logits = {0.0f, 1.0f};
  SequenceRng rng(1);
  auto t = sampler.sample_row(logits.data(), 2, SamplerRow{&p, nullptr, nullptr, &rng});
  EXPECT_FALSE(t.ok());
  // The request check names the field first.
  GenerationRequest request;
  request.prompt_ids = {1};
  request.params.logit_bias = {{300, 1.0f}};
  Status status = validate_generation_request(request, RequestLimits{256, 64});
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().param, "logit_bias");
  request.params.logit_bias = {{3, 101.0f}};
  EXPECT_EQ(validate_generation_request(request, RequestLimits{256, 64}).error().param, "logit_bias");
}

TEST(RequestFieldsSampler, MinTokensMasksEosAndStopIdsUntilReached) {
  Sampler sampler;
  sampler.set_eos_token_ids({0});
  SamplingParams p;
  p.temperature = 0.0;
  p.min_tokens = 3;
  p.stop_token_ids = {1};
  const std::vector<float> logits = {9.0f, 8.0f, 1.0f, 2.0f};  // EOS best, then the stop id
  std::vector<int32_t> output;
  EXPECT_EQ(sample(sampler, logits, p, &output), 3);  // 0 generated: both masked
  output = {3, 3};
  EXPECT_EQ(sample(sampler, logits, p, &output), 3);  // 2 generated
  output = {3, 3, 3};
  EXPECT_EQ(sample(sampler, logits, p, &output), 0);  // 3 generated: EOS allowed again
  // ignore_eos does not lift the mask's reason to exist: stop ids stay masked too.
  p.ignore_eos = true;
  output = {};
  EXPECT_EQ(sample(sampler, logits, p, &output), 3);
  // Sampling (not greedy) never draws a masked id either.
  p.temperature = 1.0;
  SequenceRng rng(3);
  for (int i = 0; i < 300; ++i) {
    const int32_t id = sample(sampler, logits, p, &output, &rng);
    EXPECT_NE(id, 0);
    EXPECT_NE(id, 1);
  }
}

TEST(RequestFieldsSampler, MinTokensAboveMaxTokensIsRefusedNamingTheField) {
  SamplingParams p;
  p.max_tokens = 4;
  p.min_tokens = 5;
  Status status = p.validate();
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().param, "min_tokens");
  p.min_tokens = 4;
  EXPECT_TRUE(p.validate().ok());
}

std::string stream(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, bool skip, bool spaces) {
  IncrementalDetokenizer detokenizer(tokenizer, skip, spaces);
  std::string text;
  for (int32_t id : ids) text += detokenizer.push(id);
  return text + detokenizer.flush();
}

class SpecialTokenFlagsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SpecialTokenFlagsTest, SkipAndSpacesBetweenSpecialTokens) {
  const Tokenizer* tokenizer = testing::real_tokenizer(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  const std::string bos = tokenizer->bos_token().empty() ? tokenizer->eos_token() : tokenizer->bos_token();
  const int32_t special = tokenizer->token_to_id(bos);
  ASSERT_GE(special, 0) << bos;
  ASSERT_TRUE(tokenizer->is_special(special));
  std::vector<int32_t> ids{special};
  for (int32_t id : tokenizer->encode("Hello world")) ids.push_back(id);
  ids.push_back(special);
  ids.push_back(special);
  // skip_special_tokens (the default): the special tokens vanish, the flag of spaces changes nothing.
  EXPECT_EQ(tokenizer->decode(ids, true, true), "Hello world");
  EXPECT_EQ(stream(*tokenizer, ids, true, true), "Hello world");
  // Kept, without spaces: glued as the fast tokenizers print them.
  EXPECT_EQ(tokenizer->decode(ids, false, false), bos + "Hello world" + bos + bos);
  EXPECT_EQ(stream(*tokenizer, ids, false, false), bos + "Hello world" + bos + bos);
  // Kept, with spaces: each special token its own piece, pieces joined by one space.
  const std::string spaced = bos + " Hello world " + bos + " " + bos;
  EXPECT_EQ(tokenizer->decode(ids, false, true), spaced);
  EXPECT_EQ(stream(*tokenizer, ids, false, true), spaced);
}

INSTANTIATE_TEST_SUITE_P(All, SpecialTokenFlagsTest, ::testing::ValuesIn(testing::kTokenizerNames));

ChatTemplate load_template(const std::string& name) {
  auto t = ChatTemplate::load(testing::tokenizer_dir(name));
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
  return t.ok() ? std::move(t).value() : ChatTemplate();
}

TEST(RequestFieldsTemplate, ChatTemplateKwargsReachTheTemplate) {
  const ChatTemplate qwen3 = load_template("qwen3");
  const nlohmann::json messages = nlohmann::json::parse(R"([{"role": "user", "content": "2+2?"}])");
  const nlohmann::json kwargs = {{"enable_thinking", false}};
  ChatRenderOptions options;
  auto plain = qwen3.render(messages, nullptr, options);
  options.template_kwargs = &kwargs;
  auto no_thinking = qwen3.render(messages, nullptr, options);
  ASSERT_TRUE(plain.ok() && no_thinking.ok());
  // As transformers renders Qwen3 with enable_thinking=False.
  EXPECT_EQ(no_thinking.value(), plain.value() + "<think>\n\n</think>\n\n");
  // `messages` cannot be replaced through the kwargs; a non-object is an error.
  const nlohmann::json sneaky = {{"messages", nlohmann::json::array()}};
  options.template_kwargs = &sneaky;
  EXPECT_EQ(qwen3.render(messages, nullptr, options).value(), plain.value());
  const nlohmann::json not_object = 3;
  options.template_kwargs = &not_object;
  EXPECT_FALSE(qwen3.render(messages, nullptr, options).ok());
}

TEST(RequestFieldsTemplate, ContinueFinalMessageEndsInsideTheAssistantTurn) {
  const nlohmann::json messages = nlohmann::json::parse(
      R"([{"role": "user", "content": "Count to three."}, {"role": "assistant", "content": "One, two,"}])");
  for (const char* name : {"qwen3", "llama3_1", "deepseek_v3"}) {
    const ChatTemplate t = load_template(name);
    ChatRenderOptions options;
    options.add_generation_prompt = false;
    auto closed = t.render(messages, nullptr, options);
    options.continue_final_message = true;
    auto open = t.render(messages, nullptr, options);
    ASSERT_TRUE(closed.ok() && open.ok()) << name;
    // transformers' rule: the render cut right after the final message's content.
    const std::string& c = closed.value();
    EXPECT_EQ(open.value(), c.substr(0, c.rfind("One, two,") + 9)) << name;
    EXPECT_LT(open->size(), c.size()) << name << ": the closing tokens are gone";
    options.add_generation_prompt = true;
    EXPECT_FALSE(t.render(messages, nullptr, options).ok()) << name << ": both flags conflict";
  }
  EXPECT_FALSE(cut_after_final_message("no such text", messages).ok());
}

}  // namespace
}  // namespace troupe
