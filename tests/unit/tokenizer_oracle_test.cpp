// Exact ids against the Hugging Face `tokenizers` oracle: tools/oracle_tokenizer_ids.py writes
// tests/fixtures/tokenizer/<name>_ids.json for corpus.json; random_<name>_ids.json holds 300 random
// mixed-script strings (whitespace variants, marks, emoji, added-token fragments) encoded by
// tokenizers 0.23.2. Skipped with a message while a fixture is missing.
#include <gtest/gtest.h>

#include "tokenizer_test_support.hpp"

namespace troupe {
namespace {

class TokenizerOracleTest : public ::testing::TestWithParam<std::string> {};

void expect_matches_oracle(const std::string& name, const std::string& file_name) {
  const std::string path = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/tokenizer/" + file_name;
  if (!std::ifstream(path).good()) GTEST_SKIP() << "no oracle " << path << " (run tools/oracle_tokenizer_ids.py)";
  const Tokenizer* tokenizer = testing::real_tokenizer(name);
  ASSERT_NE(tokenizer, nullptr);
  const auto entries = nlohmann::json::parse(testing::read_text_file(path));
  ASSERT_TRUE(entries.is_array()) << path;
  int num_mismatched = 0, num_special_mismatched = 0, num_decode_mismatched = 0;
  for (const auto& entry : entries) {
    const std::string text = entry.at("text");
    const auto expected = entry.at("ids").get<std::vector<int32_t>>();
    const auto ids = tokenizer->encode(text);
    if (ids != expected) {
      ++num_mismatched;
      ADD_FAILURE() << path << " ids differ for " << nlohmann::json(text).dump() << "\n got      "
                    << nlohmann::json(ids).dump() << "\n expected " << nlohmann::json(expected).dump();
    }
    if (tokenizer->encode(text, true) != entry.at("ids_with_special").get<std::vector<int32_t>>()) {
      ++num_special_mismatched;
      ADD_FAILURE() << path << " ids_with_special differ for " << nlohmann::json(text).dump();
    }
    if (tokenizer->decode(expected) != entry.at("decoded").get<std::string>()) {
      ++num_decode_mismatched;
      ADD_FAILURE() << path << " decode differs for " << nlohmann::json(text).dump();
    }
  }
  EXPECT_EQ(num_mismatched, 0) << num_mismatched << " of " << entries.size() << " corpus entries mismatch";
  EXPECT_EQ(num_special_mismatched, 0);
  EXPECT_EQ(num_decode_mismatched, 0);
}

TEST_P(TokenizerOracleTest, IdsMatchHuggingFace) { expect_matches_oracle(GetParam(), GetParam() + "_ids.json"); }

TEST_P(TokenizerOracleTest, RandomStringsMatchHuggingFace) {
  expect_matches_oracle(GetParam(), "random_" + GetParam() + "_ids.json");
}

INSTANTIATE_TEST_SUITE_P(All, TokenizerOracleTest, ::testing::ValuesIn(testing::kTokenizerNames));

}  // namespace
}  // namespace troupe
