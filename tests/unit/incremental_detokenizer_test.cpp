// Streaming detokenization over the real tokenizers: ids pushed one at a time must give valid
// UTF-8 pieces whose concatenation is decode(all ids).
#include <gtest/gtest.h>

#include <random>

#include "text/byte_level.hpp"
#include "text/utf8.hpp"
#include "tokenizer_test_support.hpp"

namespace troupe {
namespace {

class IncrementalDetokenizerTest : public ::testing::TestWithParam<std::string> {};

std::string stream(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, bool skip_special) {
  IncrementalDetokenizer detokenizer(tokenizer, skip_special);
  std::string text;
  for (int32_t id : ids) {
    const std::string piece = detokenizer.push(id);
    EXPECT_TRUE(utf8::is_valid(piece)) << "broken UTF-8 emitted after id " << id;
    text += piece;
  }
  const std::string rest = detokenizer.flush();
  EXPECT_TRUE(utf8::is_valid(rest));
  return text + rest;
}

TEST_P(IncrementalDetokenizerTest, CorpusStreamsToTheFullDecode) {
  const Tokenizer* tokenizer = testing::real_tokenizer(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  for (const auto& text : testing::corpus()) {
    const auto ids = tokenizer->encode(text);
    EXPECT_EQ(stream(*tokenizer, ids, false), tokenizer->decode(ids)) << text;
  }
}

TEST_P(IncrementalDetokenizerTest, RandomTokensNeverEmitBrokenUtf8) {
  const Tokenizer* tokenizer = testing::real_tokenizer(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  std::mt19937 rng(1234);
  // Byte-level tokens split multi-byte characters: random ids, plus emoji/CJK text cut at random
  // points and mixed with special tokens.
  std::uniform_int_distribution<int32_t> any_id(0, static_cast<int32_t>(tokenizer->vocab_size()) - 1);
  for (int trial = 0; trial < 40; ++trial) {
    std::vector<int32_t> ids;
    const int length = 1 + static_cast<int>(rng() % 40);
    for (int i = 0; i < length; ++i) ids.push_back(any_id(rng));
    for (bool skip : {false, true}) EXPECT_EQ(stream(*tokenizer, ids, skip), tokenizer->decode(ids, skip));
  }
  const auto& texts = testing::corpus();
  for (int trial = 0; trial < 40; ++trial) {
    const auto a = tokenizer->encode(texts[rng() % texts.size()]);
    const auto b = tokenizer->encode(texts[rng() % texts.size()]);
    std::vector<int32_t> ids(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(rng() % (a.size() + 1)));
    ids.push_back(tokenizer->token_to_id(tokenizer->eos_token()));
    ids.insert(ids.end(), b.begin() + static_cast<std::ptrdiff_t>(rng() % (b.size() + 1)), b.end());
    for (bool skip : {false, true}) EXPECT_EQ(stream(*tokenizer, ids, skip), tokenizer->decode(ids, skip));
  }
}

TEST_P(IncrementalDetokenizerTest, HoldsBackAnIncompleteCharacter) {
  const Tokenizer* tokenizer = testing::real_tokenizer(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  // "\xF0\x9F\x98\x80" (an emoji) as four single-byte tokens: nothing until the last byte.
  const ByteLevelTable& table = ByteLevelTable::get();
  IncrementalDetokenizer detokenizer(*tokenizer);
  EXPECT_EQ(detokenizer.push(tokenizer->token_to_id("a")), "a");
  const std::string emoji = "\xF0\x9F\x98\x80";
  for (size_t i = 0; i < emoji.size(); ++i) {
    const int32_t id = tokenizer->token_to_id(table.char_of(static_cast<unsigned char>(emoji[i])));
    ASSERT_GE(id, 0);
    EXPECT_EQ(detokenizer.push(id), i + 1 < emoji.size() ? "" : emoji) << "byte " << i;
  }
  // A dangling lead byte is held back; flush() gives it as U+FFFD, like decode().
  EXPECT_EQ(detokenizer.push(tokenizer->token_to_id(table.char_of(0xE4))), "");
  EXPECT_EQ(detokenizer.flush(), "\xEF\xBF\xBD");
}

INSTANTIATE_TEST_SUITE_P(All, IncrementalDetokenizerTest, ::testing::ValuesIn(testing::kTokenizerNames));

}  // namespace
}  // namespace troupe
