// Unit tests of the streaming text pieces: stop strings, reasoning split, auth compare, parsing.
#include <gtest/gtest.h>

#include <random>

#include "http/auth.hpp"
#include "http/openai_request.hpp"
#include "http/reasoning_parser.hpp"
#include "http/stop_strings.hpp"

namespace troupe::http {
namespace {

// Feeds text in pieces of the given sizes (cycled) and returns what was emitted + flushed.
std::string run_stop(const std::string& text, std::vector<std::string> stops, size_t piece, bool* stopped) {
  StopStringMatcher m(std::move(stops));
  std::string out;
  for (size_t at = 0; at < text.size() && !m.is_stopped(); at += piece) out += m.push(text.substr(at, piece)).text;
  out += m.flush();
  *stopped = m.is_stopped();
  return out;
}

TEST(HttpStopStrings, MatchesAcrossEveryChunkSize) {
  const std::string text = "abcSTxOPdefSTOPghi";
  for (size_t piece = 1; piece <= text.size(); ++piece) {
    bool stopped = false;
    EXPECT_EQ(run_stop(text, {"STOP"}, piece, &stopped), "abcSTxOPdef") << "piece " << piece;
    EXPECT_TRUE(stopped);
  }
}

TEST(HttpStopStrings, EarliestOfSeveralAndNoMatchKeepsAll) {
  bool stopped = false;
  EXPECT_EQ(run_stop("one two three", {"three", "two"}, 2, &stopped), "one ");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(run_stop("one two thre", {"three"}, 3, &stopped), "one two thre");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(run_stop("abc", {""}, 1, &stopped), "abc");  // empty stop strings are ignored
}

TEST(HttpStopStrings, NeverEmitsAPrefixOfTheStopStringEarly) {
  StopStringMatcher m({"</end>"});
  EXPECT_EQ(m.push("text</e").text, "text");
  EXPECT_EQ(m.push("n").text, "");
  auto step = m.push("d>tail");
  EXPECT_EQ(step.text, "");
  EXPECT_TRUE(step.stopped);
}

std::pair<std::string, std::string> run_reasoning(const std::string& text, bool inside, size_t piece) {
  ReasoningParser p(inside);
  std::string reasoning, content;
  for (size_t at = 0; at < text.size(); at += piece) {
    ReasoningDelta d = p.push(text.substr(at, piece));
    reasoning += d.reasoning;
    content += d.content;
  }
  ReasoningDelta d = p.flush();
  return {reasoning + d.reasoning, content + d.content};
}

TEST(HttpReasoningParser, SplitsThinkBlockAtEveryChunkSize) {
  const std::string text = "<think>a<b</thin</think>answer <x>";
  for (size_t piece = 1; piece <= text.size(); ++piece) {
    auto [reasoning, content] = run_reasoning(text, false, piece);
    EXPECT_EQ(reasoning, "a<b</thin") << "piece " << piece;
    EXPECT_EQ(content, "answer <x>") << "piece " << piece;
  }
}

TEST(HttpReasoningParser, StartsInsideWhenTheTemplateOpenedThink) {
  auto parser = ReasoningParser::create("deepseek_r1", "<|assistant|><think>\n");
  ASSERT_NE(parser, nullptr);
  ReasoningDelta a = parser->push("plan</th");
  ReasoningDelta b = parser->push("ink>done");
  EXPECT_EQ(a.reasoning + b.reasoning, "plan");
  EXPECT_EQ(a.content + b.content, "done");
  EXPECT_EQ(ReasoningParser::create("", "x"), nullptr);
  EXPECT_EQ(ReasoningParser::create("nope", "x"), nullptr);
  // Unterminated reasoning stays reasoning; no tags at all is all content.
  EXPECT_EQ(run_reasoning("<think>still", false, 3).first, "still");
  EXPECT_EQ(run_reasoning("plain", false, 2).second, "plain");
}

TEST(HttpAuth, ConstantTimeCompareAndBearer) {
  EXPECT_TRUE(constant_time_equals("secret", "secret"));
  EXPECT_FALSE(constant_time_equals("secreT", "secret"));
  EXPECT_FALSE(constant_time_equals("secret1", "secret"));
  EXPECT_FALSE(constant_time_equals("", "secret"));
  EXPECT_TRUE(is_authorized("", ""));
  EXPECT_TRUE(is_authorized("Bearer k1", "k1"));
  EXPECT_FALSE(is_authorized("Bearer k2", "k1"));
  EXPECT_FALSE(is_authorized("k1", "k1"));
  EXPECT_FALSE(is_authorized("", "k1"));
}

TEST(HttpOpenAIRequest, ParsesChatParameters) {
  auto body = parse_json_body(R"({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],
    "max_completion_tokens":7,"temperature":0,"top_p":0.5,"top_k":3,"min_p":0.1,"seed":9,"stop":"x",
    "n":2,"stream":true,"stream_options":{"include_usage":true},"presence_penalty":1,"frequency_penalty":-1,
    "repetition_penalty":1.2,"logprobs":true,"top_logprobs":2,"ignore_eos":true})");
  ASSERT_TRUE(body.ok());
  std::string param;
  auto r = parse_chat_request(body.value(), param);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->messages[0]["content"], "hi");
  EXPECT_EQ(r->params.max_tokens, 7);
  EXPECT_TRUE(r->max_tokens_given);
  EXPECT_TRUE(r->params.is_greedy());
  EXPECT_DOUBLE_EQ(r->params.top_p, 0.5);
  EXPECT_EQ(r->params.top_k, 3);
  EXPECT_DOUBLE_EQ(r->params.min_p, 0.1);
  EXPECT_EQ(r->params.seed, 9);
  EXPECT_EQ(r->stop, std::vector<std::string>{"x"});
  EXPECT_EQ(r->n, 2);
  EXPECT_TRUE(r->stream && r->include_usage && r->params.ignore_eos);
  EXPECT_DOUBLE_EQ(r->params.repetition_penalty, 1.2);
  EXPECT_EQ(r->params.logprobs, 2);
}

TEST(HttpOpenAIRequest, BadFieldsNameTheParam) {
  struct Case {
    const char* body;
    const char* param;
  };
  const Case cases[] = {
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-1})", "max_tokens"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"})", "temperature"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"top_p":0})", "top_p"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"seed":1.5})", "seed"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]})", "stop"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"n":0})", "n"},
      {R"({"model":"m","messages":[{"role":"user","content":"x"}],"top_logprobs":2})", "top_logprobs"},
      {R"({"model":"m","messages":[{"role":"wizard","content":"x"}]})", "messages[0].role"},
      {R"({"model":"m","messages":[]})", "messages"},
      {R"({"messages":[{"role":"user","content":"x"}]})", "model"},
  };
  for (const Case& c : cases) {
    auto body = parse_json_body(c.body);
    ASSERT_TRUE(body.ok()) << c.body;
    std::string param;
    auto r = parse_chat_request(body.value(), param);
    ASSERT_FALSE(r.ok()) << c.body;
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(param, c.param) << c.body;
    EXPECT_NE(r.error().message.find(c.param), std::string::npos) << r.error().message;
  }
}

TEST(HttpOpenAIRequest, RejectsBadBodiesAndDeepNesting) {
  EXPECT_FALSE(parse_json_body("{").ok());
  EXPECT_FALSE(parse_json_body("[1,2]").ok());
  EXPECT_FALSE(parse_json_body(std::string(100, '[') + std::string(100, ']')).ok());
  EXPECT_TRUE(parse_json_body(R"({"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["})").ok());
}

}  // namespace
}  // namespace troupe::http
