// Small hand-made tokenizer.json files: Llama-2 style sentencepiece BPE with byte fallback, and
// the errors for what is not supported.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "text/tokenizer.hpp"

namespace troupe {
namespace {

using nlohmann::json;

const std::string kSpace = "\xE2\x96\x81";  // "▁"

// Vocabulary: <unk>, <s>, </s>, the 256 byte tokens, then a few pieces; merges a+b, ▁+ab.
json sentencepiece_json() {
  json vocab = json::object();
  vocab["<unk>"] = 0;
  vocab["<s>"] = 1;
  vocab["</s>"] = 2;
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  vocab[kSpace] = 259;
  vocab["a"] = 260;
  vocab["b"] = 261;
  vocab["ab"] = 262;
  vocab[kSpace + "ab"] = 263;
  json root;
  root["added_tokens"] = json::array({{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                                      {{"id", 1}, {"content", "<s>"}, {"special", true}},
                                      {{"id", 2}, {"content", "</s>"}, {"special", true}}});
  root["normalizer"] = {{"type", "Sequence"},
                        {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", kSpace}},
                                                     {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSpace}}})}};
  root["pre_tokenizer"] = nullptr;
  root["post_processor"] = {{"type", "TemplateProcessing"},
                            {"single", json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                                                    {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                            {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}};
  root["decoder"] = {{"type", "Sequence"},
                     {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", kSpace}}}, {"content", " "}},
                                               {{"type", "ByteFallback"}},
                                               {{"type", "Fuse"}},
                                               {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  root["model"] = {{"type", "BPE"}, {"unk_token", "<unk>"}, {"byte_fallback", true}, {"fuse_unk", true},
                   {"vocab", vocab}, {"merges", json::array({"a b", kSpace + " ab"})}};
  return root;
}

TEST(TokenizerFormats, SentencepieceByteFallback) {
  auto tokenizer = Tokenizer::from_json(sentencepiece_json().dump(), "{\"bos_token\": \"<s>\", \"eos_token\": \"</s>\"}");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.error().message;
  // "ab é" -> "▁ab▁é": ▁ab (merges a+b then ▁+ab), ▁, then é = C3 A9 by byte fallback.
  EXPECT_EQ(tokenizer->encode("ab \xC3\xA9"), (std::vector<int32_t>{263, 259, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(tokenizer->encode("ab", true), (std::vector<int32_t>{1, 263}));
  EXPECT_EQ(tokenizer->decode({263, 259, 3 + 0xC3, 3 + 0xA9}), "ab \xC3\xA9");
  // A lone fallback byte that is not UTF-8 decodes to U+FFFD.
  EXPECT_EQ(tokenizer->decode({260, 3 + 0xC3}), "a\xEF\xBF\xBD");
  EXPECT_EQ(tokenizer->decode({1, 263}, true), "ab");
  EXPECT_EQ(tokenizer->bos_token(), "<s>");
  EXPECT_EQ(tokenizer->eos_token(), "</s>");
  EXPECT_EQ(tokenizer->vocab_size(), 264);
}

TEST(TokenizerFormats, MetaspacePreTokenizerAndDecoder) {
  json root = sentencepiece_json();
  root["normalizer"] = nullptr;
  root["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", kSpace}, {"prepend_scheme", "first"}, {"split", true}};
  root["decoder"] = {{"type", "Metaspace"}, {"replacement", kSpace}, {"prepend_scheme", "first"}};
  auto tokenizer = Tokenizer::from_json(root.dump(), "");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.error().message;
  // "ab ab" -> "▁ab▁ab" -> pieces "▁ab", "▁ab".
  EXPECT_EQ(tokenizer->encode("ab ab"), (std::vector<int32_t>{263, 263}));
  EXPECT_EQ(tokenizer->decode({263, 263}), "ab ab");
  // prepend_scheme "first": only the text at the start of the input gets "▁".
  EXPECT_EQ(tokenizer->encode("ab<s>ab"), (std::vector<int32_t>{263, 1, 262}));
  root["pre_tokenizer"]["prepend_scheme"] = "always";
  auto always = Tokenizer::from_json(root.dump(), "");
  ASSERT_TRUE(always.ok());
  EXPECT_EQ(always->encode("ab<s>ab"), (std::vector<int32_t>{263, 1, 263}));
}

TEST(TokenizerFormats, UnknownModelTypeIsUnsupported) {
  json root = sentencepiece_json();
  root["model"] = {{"type", "WordPiece"}, {"vocab", {{"a", 0}}}};
  auto tokenizer = Tokenizer::from_json(root.dump(), "");
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.error().code, ErrorCode::unsupported);
  EXPECT_NE(tokenizer.error().message.find("WordPiece"), std::string::npos) << tokenizer.error().message;
  root["model"] = {{"type", "Unigram"}, {"vocab", json::array()}};
  EXPECT_EQ(Tokenizer::from_json(root.dump(), "").error().code, ErrorCode::unsupported);
}

TEST(TokenizerFormats, UnknownPreTokenizerIsUnsupported) {
  json root = sentencepiece_json();
  root["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  auto tokenizer = Tokenizer::from_json(root.dump(), "");
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.error().code, ErrorCode::unsupported);
  EXPECT_NE(tokenizer.error().message.find("BertPreTokenizer"), std::string::npos);
}

TEST(TokenizerFormats, BadInputsGiveClearErrors) {
  EXPECT_EQ(Tokenizer::from_json("{not json", "").error().code, ErrorCode::corrupt_data);
  json root = sentencepiece_json();
  root["model"]["merges"] = json::array({"a zz"});
  auto bad_merge = Tokenizer::from_json(root.dump(), "");
  ASSERT_FALSE(bad_merge.ok());
  EXPECT_NE(bad_merge.error().message.find("a zz"), std::string::npos);
  auto missing = Tokenizer::load("/nonexistent/model");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::not_found);
  EXPECT_NE(missing.error().message.find("/nonexistent/model/tokenizer.json"), std::string::npos);
}

}  // namespace
}  // namespace troupe
