// grammar/: regexes, JSON schemas and choices compiled to byte automata: what they accept and
// reject, and the errors that name what is unsupported.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "grammar/compiled_grammar.hpp"
#include "json_schema_check.hpp"

namespace troupe::grammar {
namespace {

// Whether the whole of `text` is in the language.
bool matches(ByteAutomaton& a, const std::string& text) {
  int32_t s = a.start();
  for (unsigned char c : text) {
    s = a.step(s, c);
    if (s == ByteAutomaton::kDead) return false;
  }
  return a.is_accepting(s);
}

std::unique_ptr<ByteAutomaton> compile_or_die(GrammarKind kind, const std::string& spec) {
  auto a = compile_grammar(kind, spec);
  EXPECT_TRUE(a.ok()) << (a.ok() ? "" : a.error().message);
  return a.ok() ? std::move(a.value()) : nullptr;
}

TEST(GrammarRegex, MatchesTheSubset) {
  struct Case {
    const char* pattern;
    std::vector<std::string> yes, no;
  } cases[] = {
      {"abc", {"abc"}, {"ab", "abcd", ""}},
      {"^a|b$", {"a", "b"}, {"ab", ""}},
      {"[a-c]+x?", {"a", "cbax", "bb"}, {"x", "ad", ""}},
      {"\\d{3}-\\d{2,4}", {"123-45", "123-4567"}, {"12-45", "123-4", "123-45678", "abc-12"}},
      {"(?:ab)*c", {"c", "abc", "ababc"}, {"abac", "ab"}},
      {"[^0-9]", {"a", "é", "-"}, {"5", "ab"}},
      {"\\w+@\\w+\\.com", {"joe@mail.com", "a_1@b.com"}, {"joe@mail.org", "@b.com"}},
      {"\\s*x", {"x", "  \tx"}, {" y"}},
      {".", {"a", "é", "日"}, {"\n", "ab"}},
      {"(yes|no)!{0,2}", {"yes", "no!!"}, {"no!!!", "maybe"}},
      {"日本[語人]", {"日本語", "日本人"}, {"日本"}},
      {"\\u00e9\\.", {"é."}, {"e."}},
      {"[\\-+]?1", {"-1", "+1", "1"}, {"--1"}},
      {"a+?b*+c??", {"ab", "aabbbc", "ac"}, {"b", "abcc"}},  // lazy and possessive suffixes
  };
  for (const auto& c : cases) {
    auto a = compile_or_die(GrammarKind::regex, c.pattern);
    ASSERT_NE(a, nullptr) << c.pattern;
    for (const auto& s : c.yes) EXPECT_TRUE(matches(*a, s)) << c.pattern << " should match " << s;
    for (const auto& s : c.no) EXPECT_FALSE(matches(*a, s)) << c.pattern << " should not match " << s;
  }
}

TEST(GrammarRegex, RefusesWhatItCannotDoByName) {
  for (const char* bad : {"(?=a)b", "a\\1", "(ab", "ab)", "*a", "a{3,1}", "a\\bb", "x^y", "[b-a]"}) {
    auto a = compile_grammar(GrammarKind::regex, bad);
    ASSERT_FALSE(a.ok()) << bad;
    EXPECT_EQ(a.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(a.error().message.find("offset"), std::string::npos) << a.error().message;
  }
}

// A client's pattern must not run the parser (nor the automaton's builder after it) out of stack:
// the fuzzer's find was 3.7 KB of nested '(' through guided_regex, a stack overflow. Groups nest at
// most 64 deep; a quantifier on a quantifier is refused as Python's re refuses it, so no pattern
// stacks repeats either.
TEST(GrammarRegex, RefusesDeepNestingAndStackedQuantifiers) {
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += '(';
  std::string ok = "a";
  for (int i = 0; i < 64; ++i) ok = "(" + ok + ")";
  EXPECT_NE(compile_or_die(GrammarKind::regex, ok), nullptr);  // 64 levels: fine
  struct Bad {
    std::string pattern, says;
  } bad[] = {{deep, "nested deeper than 64"}, {"(" + ok + ")", "nested deeper than 64"},
             {"a**", "multiple repeat"},        {"a{2}{3}", "multiple repeat"},
             {"(ab)+?*", "multiple repeat"},    {"a" + std::string(50000, '*'), "multiple repeat"}};
  for (const Bad& b : bad) {
    auto a = compile_grammar(GrammarKind::regex, b.pattern);
    ASSERT_FALSE(a.ok()) << b.pattern.substr(0, 40);
    EXPECT_EQ(a.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(a.error().message.find(b.says), std::string::npos) << a.error().message;
  }
}

TEST(GrammarChoice, OneOfTheStrings) {
  auto a = compile_or_die(GrammarKind::choice, R"(["red", "green", "grey"])");
  EXPECT_TRUE(matches(*a, "red"));
  EXPECT_TRUE(matches(*a, "grey"));
  EXPECT_FALSE(matches(*a, "gre"));
  EXPECT_FALSE(matches(*a, "\"red\""));
  EXPECT_FALSE(compile_grammar(GrammarKind::choice, "[]").ok());
  EXPECT_FALSE(compile_grammar(GrammarKind::choice, "[1]").ok());
  EXPECT_FALSE(compile_grammar(GrammarKind::choice, "not json").ok());
}

TEST(GrammarJsonSchema, ObjectsWithRequiredAndOptionalMembersInOrder) {
  auto a = compile_or_die(GrammarKind::json_schema, R"({"type":"object","properties":{
      "name":{"type":"string"},"age":{"type":"integer"},"tags":{"type":"array","items":{"type":"string"}}},
      "required":["name"]})");
  for (const char* yes : {R"({"name":"Bo"})", R"({"name":"Bo","age":3})", R"({"name":"Bo","tags":[]})",
                          R"({ "name" : "Bo" , "age" : -12, "tags" : ["a", "b"] })", R"({"name":"x\"\\\u00e9é日"})"})
    EXPECT_TRUE(matches(*a, yes)) << yes;
  for (const char* no : {R"({})", R"({"age":3})", R"({"age":3,"name":"Bo"})", R"({"name":"Bo",})",
                         R"({"name":"Bo","age":3.5})", R"({"name":"Bo","x":1})", R"({"name":"a)" "\x01" R"("})",
                         R"({"name":"\q"})", "{\"name\":\"\xC3\"}", R"({"name":"Bo"}  )"})
    EXPECT_FALSE(matches(*a, no)) << no;
}

TEST(GrammarJsonSchema, WhitespaceIsBounded) {
  auto a = compile_or_die(GrammarKind::json_schema, R"({"type":"array","items":{"type":"null"}})");
  EXPECT_TRUE(matches(*a, "[\n  null,\n  null\n]"));
  EXPECT_FALSE(matches(*a, "[          null]"));  // more than max_whitespace
}

TEST(GrammarJsonSchema, EnumsConstsAnyOfRefsAndArrays) {
  auto a = compile_or_die(GrammarKind::json_schema, R"({
      "$defs":{"point":{"type":"object","properties":{"x":{"type":"number"},"y":{"type":"number"}},"required":["x","y"]}},
      "type":"object","properties":{
        "kind":{"enum":["circle","square",null,1.5]},
        "version":{"const":2},
        "at":{"$ref":"#/$defs/point"},
        "corners":{"type":"array","items":{"$ref":"#/$defs/point"},"minItems":1,"maxItems":2},
        "label":{"anyOf":[{"type":"string","maxLength":3},{"type":"null"}]}},
      "required":["kind","version","at","corners","label"]})");
  EXPECT_TRUE(matches(*a, R"({"kind":"circle","version":2,"at":{"x":1,"y":-2.5e3},"corners":[{"x":0,"y":0}],"label":null})"));
  EXPECT_TRUE(matches(*a, R"({"kind":null,"version":2,"at":{"x":1,"y":2},"corners":[{"x":0,"y":0},{"x":1,"y":1}],"label":"abc"})"));
  EXPECT_TRUE(matches(*a, R"({"kind":1.5,"version":2,"at":{"x":1,"y":2},"corners":[{"x":0,"y":0}],"label":"日本"})"));
  EXPECT_FALSE(matches(*a, R"({"kind":"oval","version":2,"at":{"x":1,"y":2},"corners":[{"x":0,"y":0}],"label":null})"));
  EXPECT_FALSE(matches(*a, R"({"kind":null,"version":3,"at":{"x":1,"y":2},"corners":[{"x":0,"y":0}],"label":null})"));
  EXPECT_FALSE(matches(*a, R"({"kind":null,"version":2,"at":{"x":1,"y":2},"corners":[],"label":null})"));
  EXPECT_FALSE(matches(*a, R"({"kind":null,"version":2,"at":{"x":1,"y":2},"corners":[{"x":0,"y":0},{"x":0,"y":0},{"x":0,"y":0}],"label":null})"));
  EXPECT_FALSE(matches(*a, R"({"kind":null,"version":2,"at":{"x":1,"y":2},"corners":[{"x":0,"y":0}],"label":"abcd"})"));
}

TEST(GrammarJsonSchema, RecursiveRefsUnrollToABoundedDepth) {
  auto a = compile_or_die(GrammarKind::json_schema, R"({"type":"object","properties":{
      "value":{"type":"integer"},"next":{"anyOf":[{"$ref":"#"},{"type":"null"}]}},"required":["value","next"]})");
  EXPECT_TRUE(matches(*a, R"({"value":1,"next":{"value":2,"next":null}})"));
  EXPECT_FALSE(matches(*a, R"({"value":1,"next":{"value":2}})"));
}

TEST(GrammarJsonSchema, IntegerRangesAreExact) {
  struct Range {
    const char* schema;
    int lo, hi;
  } ranges[] = {{R"({"type":"integer","minimum":-37,"maximum":205})", -37, 205},
                {R"({"type":"integer","exclusiveMinimum":9,"exclusiveMaximum":100})", 10, 99},
                {R"({"type":"integer","minimum":0})", 0, 1000000},
                {R"({"type":"integer","maximum":-5})", -1000000, -5}};
  for (const auto& r : ranges) {
    auto a = compile_or_die(GrammarKind::json_schema, r.schema);
    for (int x = -400; x <= 400; ++x)
      EXPECT_EQ(matches(*a, std::to_string(x)), x >= r.lo && x <= r.hi) << r.schema << " x=" << x;
    EXPECT_FALSE(matches(*a, "007"));
  }
}

TEST(GrammarJsonSchema, NumberRangesWithIntegralBounds) {
  auto a = compile_or_die(GrammarKind::json_schema, R"({"type":"number","minimum":-1,"maximum":2})");
  for (const char* yes : {"0", "-1", "-0.5", "1.999", "2", "2.000", "-1.0"}) EXPECT_TRUE(matches(*a, yes)) << yes;
  for (const char* no : {"2.5", "-1.5", "3", "1e2", "-2"}) EXPECT_FALSE(matches(*a, no)) << no;
}

TEST(GrammarJsonSchema, StringLengthsPatternsAndFormats) {
  auto a = compile_or_die(GrammarKind::json_schema, R"({"type":"string","minLength":2,"maxLength":3})");
  EXPECT_TRUE(matches(*a, R"("ab")"));
  EXPECT_TRUE(matches(*a, R"("é\n日")"));
  EXPECT_FALSE(matches(*a, R"("a")"));
  EXPECT_FALSE(matches(*a, R"("abcd")"));
  auto p = compile_or_die(GrammarKind::json_schema, R"({"type":"string","pattern":"^a\"[0-9]+$"})");
  EXPECT_TRUE(matches(*p, R"("a\"12")"));
  EXPECT_FALSE(matches(*p, R"("a"12")"));
  auto d = compile_or_die(GrammarKind::json_schema, R"({"type":"string","format":"date"})");
  EXPECT_TRUE(matches(*d, R"("2026-12-03")"));
  EXPECT_FALSE(matches(*d, R"("2026-13-03")"));
}

TEST(GrammarJsonObject, AnyObjectButNotOtherValues) {
  auto a = compile_or_die(GrammarKind::json_object, "");
  EXPECT_TRUE(matches(*a, R"({})"));
  EXPECT_TRUE(matches(*a, R"({"a":[1,{"b":null}],"c":"d"})"));
  EXPECT_FALSE(matches(*a, R"([1])"));
  EXPECT_FALSE(matches(*a, R"("x")"));
  EXPECT_FALSE(matches(*a, R"({"a":1)"));
}

TEST(GrammarJsonSchema, ErrorsNameTheKeywordAndPlace) {
  struct Bad {
    const char* schema;
    const char* needle;
  } bad[] = {
      {R"({"type":"object","properties":{"a":{"type":"string","not":{}}}})", "'not'"},
      {R"({"type":"object","properties":{"a":{"type":"string","not":{}}}})", "/properties/a"},
      {R"({"type":"array","uniqueItems":true})", "uniqueItems"},
      {R"({"type":"strang"})", "strang"},
      {R"({"$ref":"#/$defs/missing"})", "points nowhere"},
      {R"({"$ref":"http://x/y.json"})", "local $ref"},
      {R"({"type":"number","minimum":0.5})", "minimum"},
      {R"({"type":"string","format":"hostname"})", "hostname"},
      {R"j({"type":"string","pattern":"(?=x)"})j", "pattern"},
      {R"(not json)", "not valid JSON"},
      {R"({"type":"object","properties":{"a":false},"required":["a"]})", "required"},
  };
  for (const auto& b : bad) {
    auto a = compile_grammar(GrammarKind::json_schema, b.schema);
    ASSERT_FALSE(a.ok()) << b.schema;
    EXPECT_EQ(a.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(a.error().message.find(b.needle), std::string::npos) << a.error().message;
  }
}

TEST(GrammarJsonSchema, RefChainsThatDoubleAreRefusedQuickly) {
  nlohmann::json defs;
  for (int i = 0; i < 40; ++i) {
    const std::string next = "#/$defs/d" + std::to_string(i + 1);
    defs["d" + std::to_string(i)] = {{"type", "object"},
                                     {"properties", {{"a", {{"$ref", next}}}, {"b", {{"$ref", next}}}}}};
  }
  defs["d40"] = {{"type", "integer"}};
  nlohmann::json schema = {{"$defs", defs}, {"$ref", "#/$defs/d0"}};
  auto a = compile_grammar(GrammarKind::json_schema, schema.dump());
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.error().message.find("too large"), std::string::npos) << a.error().message;
}

TEST(GrammarJsonSchema, TooLargeSchemasAreRefusedNotBuilt) {
  auto a = compile_grammar(GrammarKind::json_schema,
                           R"({"type":"array","items":{"type":"array","items":{"type":"string","maxLength":1000},"maxItems":1000},"maxItems":1000})");
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.error().message.find("too large"), std::string::npos) << a.error().message;
}

}  // namespace
}  // namespace troupe::grammar

// kernels/token_mask_ref: the rule the device kernel follows (tests/gpu/token_mask_test.cpp).
#include "kernels/token_mask.hpp"

namespace troupe::kernels {
namespace {

TEST(TokenMaskRef, MaskedIdsBecomeMinusInfinityOnlyInMaskedRows) {
  const int64_t vocab = 40;
  std::vector<float> logits(3 * vocab, 1.5f);
  const int32_t rows[] = {2};
  const uint32_t mask[] = {0x5u, 0x80u};  // ids 0, 2 and 39
  apply_token_mask_ref(logits.data(), vocab, rows, 1, mask, 2);
  for (int64_t i = 0; i < vocab; ++i) {
    EXPECT_EQ(logits[i], 1.5f);
    EXPECT_EQ(logits[2 * vocab + i] == 1.5f, i == 0 || i == 2 || i == 39) << i;
  }
}

}  // namespace
}  // namespace troupe::kernels
