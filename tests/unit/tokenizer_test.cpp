// The real tokenizers (DeepSeek-V3, Qwen3, Llama-3.1) against what can be derived with certainty,
// and against the Hugging Face `tokenizers` oracle when tests/fixtures/tokenizer/<name>_ids.json exists.
#include <gtest/gtest.h>

#include <functional>

#include "text/byte_level.hpp"
#include "text/utf8.hpp"
#include "tokenizer_test_support.hpp"

namespace troupe {
namespace {

using testing::corpus;
using testing::kTokenizerNames;
using testing::real_tokenizer;

class RealTokenizerTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RealTokenizerTest, RoundTripsTheCorpus) {
  const Tokenizer* tokenizer = real_tokenizer(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  const bool normalizes = GetParam() == "qwen3";  // NFC: non-ASCII text may change
  int num_checked = 0;
  for (const auto& text : corpus()) {
    const auto ids = tokenizer->encode(text);
    const std::string decoded = tokenizer->decode(ids);
    EXPECT_TRUE(utf8::is_valid(decoded)) << text;
    if (normalizes && !testing::is_ascii(text)) {
      // NFC is idempotent: the normalized text encodes to the same ids.
      EXPECT_EQ(tokenizer->encode(decoded), ids) << text;
      continue;
    }
    EXPECT_EQ(decoded, text);
    ++num_checked;
  }
  EXPECT_GT(num_checked, 30);
}

TEST_P(RealTokenizerTest, AddedTokensMapToTheirIds) {
  const Tokenizer* tokenizer = real_tokenizer(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  const auto json = nlohmann::json::parse(testing::read_text_file(testing::tokenizer_dir(GetParam()) + "/tokenizer.json"));
  int num_special = 0;
  for (const auto& token : json["added_tokens"]) {
    const std::string content = token["content"];
    const int32_t id = token["id"];
    EXPECT_EQ(tokenizer->token_to_id(content), id) << content;
    EXPECT_EQ(tokenizer->id_to_token(id), content);
    EXPECT_EQ(tokenizer->is_special(id), token["special"].get<bool>()) << content;
    EXPECT_EQ(tokenizer->encode(content), std::vector<int32_t>{id}) << content;
    // Text around an added token is encoded on its own, as in `tokenizers`.
    std::vector<int32_t> expected = tokenizer->encode("ab ");
    expected.push_back(id);
    for (int32_t rest : tokenizer->encode(" cd")) expected.push_back(rest);
    EXPECT_EQ(tokenizer->encode("ab " + content + " cd"), expected) << content;
    num_special += token["special"].get<bool>();
    EXPECT_EQ(tokenizer->decode({id}, /*skip_special_tokens=*/true), token["special"].get<bool>() ? "" : tokenizer->decode({id}));
  }
  EXPECT_GT(num_special, 0);
  EXPECT_GE(tokenizer->vocab_size(), static_cast<int64_t>(json["model"]["vocab"].size()));
  EXPECT_FALSE(tokenizer->eos_token().empty());
  EXPECT_GE(tokenizer->token_to_id(tokenizer->eos_token()), 0);
}

TEST_P(RealTokenizerTest, SingleBytesAreTheirByteTokens) {
  const Tokenizer* tokenizer = real_tokenizer(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  const ByteLevelTable& table = ByteLevelTable::get();
  for (int c = 0x20; c < 0x7F; ++c) {
    const std::string text(1, static_cast<char>(c));
    const int32_t id = tokenizer->token_to_id(table.char_of(static_cast<unsigned char>(c)));
    ASSERT_GE(id, 0) << text;
    EXPECT_EQ(tokenizer->encode(text), std::vector<int32_t>{id}) << text;
  }
}

TEST_P(RealTokenizerTest, PostProcessorFollowsTokenizerJson) {
  const Tokenizer* tokenizer = real_tokenizer(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  const auto json = nlohmann::json::parse(testing::read_text_file(testing::tokenizer_dir(GetParam()) + "/tokenizer.json"));
  // The prefix is the TemplateProcessing special tokens before "A" (none for a bare ByteLevel one).
  std::vector<int32_t> prefix;
  std::function<void(const nlohmann::json&)> collect = [&](const nlohmann::json& node) {
    if (node.is_null()) return;
    if (node["type"] == "Sequence") {
      for (const auto& child : node["processors"]) collect(child);
    } else if (node["type"] == "TemplateProcessing") {
      for (const auto& item : node["single"]) {
        if (item.contains("Sequence")) break;
        for (const auto& id : node["special_tokens"][item["SpecialToken"]["id"].get<std::string>()]["ids"]) prefix.push_back(id);
      }
    }
  };
  collect(json["post_processor"]);
  const std::vector<int32_t> plain = tokenizer->encode("Hello world");
  std::vector<int32_t> expected = prefix;
  expected.insert(expected.end(), plain.begin(), plain.end());
  EXPECT_EQ(tokenizer->encode("Hello world", /*add_special_tokens=*/true), expected);
  if (GetParam() == "llama3_1") EXPECT_EQ(prefix, std::vector<int32_t>{tokenizer->token_to_id("<|begin_of_text|>")});
}

TEST(RealTokenizer, Llama3IgnoreMergesMapsWholeWords) {
  const Tokenizer* tokenizer = real_tokenizer("llama3_1");
  ASSERT_NE(tokenizer, nullptr);
  // With ignore_merges, a pre-token found in the vocabulary is one token: " word" (one regex piece).
  int num_checked = 0;
  for (int32_t id = 0; id < 128000; id += 101) {
    const std::string token = tokenizer->id_to_token(id);
    std::string_view letters(token);
    if (letters.substr(0, 2) == "\xC4\xA0") letters.remove_prefix(2);  // "Ġ"
    if (letters.empty() || letters.size() > 12) continue;
    bool all_letters = true;
    for (char c : letters) all_letters = all_letters && ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
    if (!all_letters) continue;
    EXPECT_EQ(tokenizer->encode(tokenizer->decode({id})), std::vector<int32_t>{id}) << token;
    ++num_checked;
  }
  EXPECT_GT(num_checked, 100);
}

TEST_P(RealTokenizerTest, InvalidUtf8InputIsRepairedNotFatal) {
  const Tokenizer* tokenizer = real_tokenizer(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  const auto ids = tokenizer->encode("ok \xFF\xC3 end");
  EXPECT_EQ(tokenizer->decode(ids), "ok \xEF\xBF\xBD\xEF\xBF\xBD end");
}

INSTANTIATE_TEST_SUITE_P(All, RealTokenizerTest, ::testing::ValuesIn(kTokenizerNames));

}  // namespace
}  // namespace troupe

#include <thread>

namespace troupe {
namespace {

TEST(RealTokenizer, ConcurrentEncodesAgreeWithSerialOnes) {
  const Tokenizer* tokenizer = testing::real_tokenizer("qwen3");
  ASSERT_NE(tokenizer, nullptr);
  const auto& texts = testing::corpus();
  std::vector<std::vector<int32_t>> expected;
  for (const auto& text : texts) expected.push_back(tokenizer->encode(text));
  // Threads race for the piece cache; the ones that lose encode without it: same ids either way.
  std::vector<int> num_wrong(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round)
        for (size_t i = 0; i < texts.size(); ++i) num_wrong[t] += tokenizer->encode(texts[i]) != expected[i];
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(num_wrong[t], 0) << "thread " << t;
}

}  // namespace
}  // namespace troupe
