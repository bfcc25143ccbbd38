// grammar/: token masks on the real DeepSeek-V3 vocabulary (129,280 ids, the deepseek-r1-tiny
// fixture's tokenizer.json) against a brute-force reference, and the matcher's EOS rules.
#include <gtest/gtest.h>

#include "grammar/grammar_matcher.hpp"

namespace troupe::grammar {
namespace {

constexpr int32_t kDeepSeekEos = 1;

std::shared_ptr<const TokenVocabulary> deepseek_vocab() {
  static std::shared_ptr<const TokenVocabulary> vocab = [] {
    auto v = TokenVocabulary::from_tokenizer_json(
        std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/deepseek-r1-tiny/tokenizer.json", 129280, {kDeepSeekEos});
    EXPECT_TRUE(v.ok()) << (v.ok() ? "" : v.error().message);
    return v.ok() ? v.value() : nullptr;
  }();
  return vocab;
}

std::shared_ptr<CompiledGrammar> compiled(GrammarKind kind, const std::string& spec,
                                          std::shared_ptr<const TokenVocabulary> vocab) {
  auto a = compile_grammar(kind, spec);
  EXPECT_TRUE(a.ok()) << (a.ok() ? "" : a.error().message);
  return std::make_shared<CompiledGrammar>(std::move(a.value()), vocab);
}

bool bit(const std::vector<uint32_t>& words, int32_t id) { return (words[id >> 5] >> (id & 31)) & 1; }

// Allowed iff the automaton accepts the token's bytes from `state`; EOS iff accepting.
std::vector<uint32_t> brute_force_mask(CompiledGrammar& g, int32_t state) {
  const auto& v = g.vocab();
  std::vector<uint32_t> words(size_t(v.num_mask_words()), 0);
  bool any = false;
  for (int32_t id = 0; id < v.size(); ++id) {
    const std::string& b = v.token_bytes(id);
    if (b.empty()) continue;
    int32_t s = state;
    for (unsigned char c : b)
      if ((s = g.automaton().step(s, c)) == ByteAutomaton::kDead) break;
    if (s != ByteAutomaton::kDead) {
      words[id >> 5] |= 1u << (id & 31);
      any = true;
    }
  }
  if (g.automaton().is_accepting(state) || !any)
    for (int32_t id : v.eos_ids()) words[id >> 5] |= 1u << (id & 31);
  return words;
}

// Walks `doc` with the longest allowed token at each step, checking every mask on the way.
void check_masks_along(GrammarKind kind, const std::string& spec, const std::string& doc) {
  auto vocab = deepseek_vocab();
  ASSERT_NE(vocab, nullptr);
  auto g = compiled(kind, spec, vocab);
  GrammarMatcher m(g);
  std::vector<uint32_t> mask(size_t(vocab->num_mask_words()));
  size_t pos = 0;
  int steps = 0;
  while (true) {
    m.fill_next_token_mask(mask.data());
    ASSERT_EQ(mask, brute_force_mask(*g, m.state())) << "at byte " << pos << " of " << doc;
    if (pos == doc.size()) break;
    int32_t best = -1;
    for (int32_t id = 0; id < vocab->size(); ++id) {
      const std::string& b = vocab->token_bytes(id);
      if (!b.empty() && bit(mask, id) && doc.compare(pos, b.size(), b) == 0 &&
          (best < 0 || b.size() > vocab->token_bytes(best).size()))
        best = id;
    }
    ASSERT_GE(best, 0) << "no allowed token spells " << doc.substr(pos);
    ASSERT_TRUE(m.accept_token(best));
    pos += vocab->token_bytes(best).size();
    ++steps;
  }
  EXPECT_TRUE(m.is_accepting());
  EXPECT_TRUE(bit(mask, kDeepSeekEos));
  EXPECT_TRUE(m.accept_token(kDeepSeekEos));
  EXPECT_TRUE(m.is_terminated());
  EXPECT_GT(steps, 3);
}

TEST(GrammarMask, MatchesBruteForceOnTheDeepSeekVocabulary) {
  check_masks_along(GrammarKind::json_schema,
                    R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer","minimum":0,"maximum":150},
                        "tags":{"type":"array","items":{"enum":["a b","日本"]}}},"required":["name","age"]})",
                    R"({"name": "Zoë \"Z\" 日本語 \u00e9", "age": 42, "tags": ["日本", "a b"]})");
  check_masks_along(GrammarKind::regex, R"(\d{3}-[A-Z][a-z]+( [A-Z][a-z]+)?)", "415-San Francisco");
  check_masks_along(GrammarKind::json_object, "", "{\"k\": [2.5e-3, {\"x\": null}]}");
}

TEST(GrammarMask, EosOnlyWhereTheGrammarMayEndAndForcedAtTheEnd) {
  auto vocab = deepseek_vocab();
  ASSERT_NE(vocab, nullptr);
  GrammarMatcher m(compiled(GrammarKind::choice, R"(["yes","yes!"])", vocab));
  std::vector<uint32_t> mask(size_t(vocab->num_mask_words()));
  m.fill_next_token_mask(mask.data());
  EXPECT_FALSE(bit(mask, kDeepSeekEos));
  EXPECT_FALSE(m.accept_token(kDeepSeekEos));
  ASSERT_TRUE(m.accept_bytes("yes"));
  m.fill_next_token_mask(mask.data());
  EXPECT_TRUE(bit(mask, kDeepSeekEos));  // may end, or go on with "!"
  ASSERT_TRUE(m.accept_bytes("!"));
  m.fill_next_token_mask(mask.data());
  int num_allowed = 0;
  for (int32_t id = 0; id < vocab->size(); ++id) num_allowed += bit(mask, id);
  EXPECT_EQ(num_allowed, 1);  // only EOS
  EXPECT_TRUE(bit(mask, kDeepSeekEos));
  EXPECT_FALSE(m.accept_bytes("!"));
}

TEST(GrammarMask, SpecialTokensAreNeverAllowedInside) {
  auto vocab = deepseek_vocab();
  ASSERT_NE(vocab, nullptr);
  GrammarMatcher m(compiled(GrammarKind::regex, ".*", vocab));
  std::vector<uint32_t> mask(size_t(vocab->num_mask_words()));
  m.fill_next_token_mask(mask.data());
  EXPECT_FALSE(bit(mask, 0));       // <｜begin▁of▁sentence｜>
  EXPECT_FALSE(bit(mask, 128798));  // a special added token
  EXPECT_FALSE(bit(mask, 129279));  // padding past the tokenizer
  EXPECT_TRUE(vocab->token_bytes(0).empty());
  EXPECT_FALSE(m.accept_token(0));
}

TEST(GrammarVocabulary, ByteLevelTokensMapBackToBytes) {
  auto vocab = deepseek_vocab();
  ASSERT_NE(vocab, nullptr);
  int spaced = 0, multibyte = 0;
  for (int32_t id = 0; id < vocab->size(); ++id) {
    const std::string& b = vocab->token_bytes(id);
    spaced += !b.empty() && b[0] == ' ';
    multibyte += !b.empty() && (static_cast<unsigned char>(b[0]) >= 0x80);
  }
  EXPECT_GT(spaced, 10000);
  EXPECT_GT(multibyte, 1000);
  for (int b = 0; b < 256; ++b) {  // every byte is spellable by some one-byte token
    bool found = false;
    for (int32_t id = 0; id < vocab->size() && !found; ++id) found = vocab->token_bytes(id) == std::string(1, char(b));
    EXPECT_TRUE(found) << b;
  }
}

}  // namespace
}  // namespace troupe::grammar
