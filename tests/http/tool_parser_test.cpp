// Tool-call parsers: whole outputs of each format (content, calls, malformed text back as
// content), and the stream of deltas (split at every byte, and one byte at a time) adding up to
// the whole parse.
#include <gtest/gtest.h>

#include <functional>
#include <map>

#include "http/tool_call_stream.hpp"
#include "http/tool_parser.hpp"

namespace troupe::http {
namespace {

const std::string kCallsBegin = "<｜tool▁calls▁begin｜>";
const std::string kCallsEnd = "<｜tool▁calls▁end｜>";
const std::string kCallBegin = "<｜tool▁call▁begin｜>";
const std::string kCallEnd = "<｜tool▁call▁end｜>";
const std::string kSep = "<｜tool▁sep｜>";

std::string v3_call(const std::string& name, const std::string& args) {
  return kCallBegin + "function" + kSep + name + "\n```json\n" + args + "\n```" + kCallEnd;
}
std::string v31_call(const std::string& name, const std::string& args) {
  return kCallBegin + name + kSep + args + kCallEnd;
}

struct Call {
  std::string name, arguments;
  bool operator==(const Call& o) const { return name == o.name && arguments == o.arguments; }
};
std::ostream& operator<<(std::ostream& os, const Call& c) { return os << c.name << "(" << c.arguments << ")"; }

using Factory = std::function<std::unique_ptr<ToolParser>()>;

struct Case {
  std::string label;
  Factory parser;
  std::string text;
  std::string content;        // whole parse
  std::vector<Call> calls;    // whole parse; empty: the text comes back as content
};

std::vector<Call> calls_of(const ToolParse& parse) {
  std::vector<Call> out;
  for (const ParsedToolCall& c : parse.calls) out.push_back({c.name, c.arguments});
  return out;
}

struct Streamed {
  std::string content;
  std::vector<Call> calls;
  std::vector<std::string> ids;
};

// Feeds the pieces, checking the delta rules: a call's first delta carries id and name, its
// index is the next one; later deltas only extend arguments of a call already begun.
Streamed stream(const Factory& factory, const std::vector<std::string>& pieces) {
  ToolCallStream stream(factory());
  Streamed out;
  auto take = [&](const ToolStreamDelta& d) {
    out.content += d.content;
    for (const ToolCallDelta& c : d.tool_calls) {
      if (c.is_first) {
        EXPECT_EQ(c.index, int(out.calls.size()));
        EXPECT_EQ(c.id.rfind("chatcmpl-tool-", 0), 0u) << c.id;
        EXPECT_FALSE(c.name.empty());
        out.calls.push_back({c.name, c.arguments});
        out.ids.push_back(c.id);
      } else {
        ASSERT_LT(c.index, int(out.calls.size()));
        EXPECT_TRUE(c.id.empty() && c.name.empty());
        EXPECT_FALSE(c.arguments.empty());
        out.calls[size_t(c.index)].arguments += c.arguments;
      }
    }
  };
  for (const std::string& piece : pieces) take(stream.push(piece));
  take(stream.finish());
  EXPECT_EQ(stream.num_calls_sent(), int(out.calls.size()));
  return out;
}

std::vector<Case> cases() {
  Factory v3 = make_deepseek_v3_tool_parser, v31 = make_deepseek_v31_tool_parser, hermes = make_hermes_tool_parser,
          llama = make_llama3_json_tool_parser;
  Factory named = [] { return make_named_tool_parser("get_weather"); };
  Factory required = make_required_tool_parser;
  const std::string paris = R"({"city": "Paris"})", add = R"({"a": 2, "b": 3})";
  std::vector<Case> c = {
      {"v3 two calls", v3, "Let me check." + kCallsBegin + v3_call("get_weather", paris) + "\n" + v3_call("add", add) + kCallsEnd,
       "Let me check.", {{"get_weather", paris}, {"add", add}}},
      {"v3 one call, no calls_end (the template's own form)", v3, kCallsBegin + v3_call("get_weather", paris), "",
       {{"get_weather", paris}}},
      {"v3 after R1's </think>: space-only content dropped", v3, "\n\n" + kCallsBegin + v3_call("add", add) + kCallsEnd, "",
       {{"add", add}}},
      {"v3 non-ASCII and escapes in arguments", v3,
       kCallsBegin + v3_call("get_weather", R"({"city": "Zürich \"城\" \u00e9", "n": [1, {"x": null}]})") + kCallsEnd, "",
       {{"get_weather", R"({"city": "Zürich \"城\" \u00e9", "n": [1, {"x": null}]})"}}},
      {"v3 text after the calls is content", v3, kCallsBegin + v3_call("add", add) + kCallsEnd + " done", " done",
       {{"add", add}}},
      {"v3 plain text", v3, "The answer is 4.", "The answer is 4.", {}},
      {"v3 bad JSON", v3, "x" + kCallsBegin + v3_call("add", R"({"a": 2,})") + kCallsEnd,
       "x" + kCallsBegin + v3_call("add", R"({"a": 2,})") + kCallsEnd, {}},
      {"v3 cut short by max_tokens", v3, "x" + kCallsBegin + kCallBegin + "function" + kSep + "add\n```json\n{\"a\": 2",
       "x" + kCallsBegin + kCallBegin + "function" + kSep + "add\n```json\n{\"a\": 2", {}},
      {"v3 calls_end before any call", v3, kCallsBegin + kCallsEnd, kCallsBegin + kCallsEnd, {}},
      {"v3 junk inside the section", v3, kCallsBegin + "junk" + v3_call("add", add), kCallsBegin + "junk" + v3_call("add", add), {}},
      {"v31 two calls", v31, "ok" + kCallsBegin + v31_call("get_weather", paris) + v31_call("add", add) + kCallsEnd, "ok",
       {{"get_weather", paris}, {"add", add}}},
      {"v31 arguments not an object", v31, kCallsBegin + v31_call("add", "[1]") + kCallsEnd,
       kCallsBegin + v31_call("add", "[1]") + kCallsEnd, {}},
      {"hermes two calls", hermes,
       "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + paris + "}\n</tool_call>\n<tool_call>\n"
       "{\"name\": \"add\", \"arguments\": " + add + "}\n</tool_call>",
       "Checking.\n", {{"get_weather", paris}, {"add", add}}},
      {"hermes unclosed last call, braces inside strings", hermes,
       "<tool_call>\n{\"arguments\": {\"q\": \"a } b {\"}, \"name\": \"search\"}",
       "", {{"search", R"({"q": "a } b {"})"}}},
      {"hermes parameters key, no arguments at all", hermes,
       "<tool_call>{\"name\": \"now\"}</tool_call><tool_call>{\"name\": \"add\", \"parameters\": " + add + "}</tool_call>", "",
       {{"now", "{}"}, {"add", add}}},
      {"hermes bad JSON", hermes, "<tool_call>\n{\"name\": \"add\", \"arguments\": {a: 1}}\n</tool_call>",
       "<tool_call>\n{\"name\": \"add\", \"arguments\": {a: 1}}\n</tool_call>", {}},
      {"hermes no name", hermes, "<tool_call>\n{\"arguments\": {}}\n</tool_call>", "<tool_call>\n{\"arguments\": {}}\n</tool_call>",
       {}},
      {"hermes cut short", hermes, "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1",
       "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1", {}},
      {"hermes text mentioning <tool", hermes, "use <tool> tags", "use <tool> tags", {}},
      {"llama3 python_tag, two calls", llama,
       "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": " + paris + "}; {\"name\": \"add\", \"parameters\": " + add + "}",
       "", {{"get_weather", paris}, {"add", add}}},
      {"llama3 bare object, arguments key", llama, " {\"name\": \"add\", \"arguments\": " + add + "}", "", {{"add", add}}},
      {"llama3 plain text", llama, "Hello there {not json}", "Hello there {not json}", {}},
      {"llama3 JSON without a name", llama, "{\"answer\": 42}", "{\"answer\": 42}", {}},
      {"llama3 trailing junk", llama, "{\"name\": \"add\", \"parameters\": " + add + "} and more",
       "{\"name\": \"add\", \"parameters\": " + add + "} and more", {}},
      {"named", named, " " + paris + "\n", "", {{"get_weather", paris}}},
      {"named cut short", named, "{\"city\": \"Par", "{\"city\": \"Par", {}},
      {"named not an object", named, "Paris", "Paris", {}},
      {"required two calls", required,
       "[{\"name\": \"add\", \"parameters\": " + add + "}, {\"name\": \"get_weather\", \"parameters\": " + paris + "}]", "",
       {{"add", add}, {"get_weather", paris}}},
      {"required empty list", required, "[]", "[]", {}},
      {"required cut short", required, "[{\"name\": \"add\", \"parameters\": {\"a\"", "[{\"name\": \"add\", \"parameters\": {\"a\"",
       {}},
  };
  return c;
}

TEST(ToolParser, WholeOutputs) {
  for (const Case& c : cases()) {
    ToolParse parse = parse_tool_calls(*c.parser(), c.text);
    EXPECT_EQ(parse.content, c.content) << c.label;
    EXPECT_EQ(calls_of(parse), c.calls) << c.label;
  }
}

TEST(ToolParser, StreamSplitAtEveryByteAddsUpToTheWholeParse) {
  for (const Case& c : cases()) {
    for (size_t split = 0; split <= c.text.size(); ++split) {
      Streamed s = stream(c.parser, {c.text.substr(0, split), c.text.substr(split)});
      if (c.calls.empty()) {
        // Malformed or plain: all the text comes back as content, nothing as a call, unless a
        // call's name had already gone out before the text turned bad (its rest is content).
        if (s.calls.empty()) EXPECT_EQ(s.content, c.text) << c.label << " split " << split;
      } else {
        EXPECT_EQ(s.content, c.content) << c.label << " split " << split;
        EXPECT_EQ(s.calls, c.calls) << c.label << " split " << split;
      }
    }
  }
}

TEST(ToolParser, StreamOneByteAtATime) {
  for (const Case& c : cases()) {
    std::vector<std::string> bytes;
    for (char ch : c.text) bytes.emplace_back(1, ch);
    Streamed s = stream(c.parser, bytes);
    if (!c.calls.empty()) {
      EXPECT_EQ(s.content, c.content) << c.label;
      EXPECT_EQ(s.calls, c.calls) << c.label;
    } else if (s.calls.empty()) {
      EXPECT_EQ(s.content, c.text) << c.label;
    }
  }
}

TEST(ToolParser, StreamSendsArgumentsAsFragmentsAfterTheName) {
  // Token-sized pieces of a hermes call: the name goes out once, then the arguments grow.
  const std::vector<std::string> pieces = {"<tool_call>", "\n{\"name\": \"get_", "weather\", \"arg", "uments\": {\"ci",
                                           "ty\": \"Par", "is\"}}\n", "</tool_call>"};
  ToolCallStream s(make_hermes_tool_parser());
  std::vector<ToolCallDelta> deltas;
  for (const std::string& p : pieces)
    for (ToolCallDelta& d : s.push(p).tool_calls) deltas.push_back(d);
  for (ToolCallDelta& d : s.finish().tool_calls) deltas.push_back(d);
  ASSERT_GE(deltas.size(), 3u);
  EXPECT_TRUE(deltas[0].is_first);
  EXPECT_EQ(deltas[0].name, "get_weather");
  std::string args = deltas[0].arguments;
  for (size_t i = 1; i < deltas.size(); ++i) {
    EXPECT_FALSE(deltas[i].is_first);
    args += deltas[i].arguments;
  }
  EXPECT_EQ(args, R"({"city": "Paris"})");
}

TEST(ToolParser, CallCutShortAfterItsNameWentOutEndsAsContent) {
  // A stream cannot take back a name it sent: the call stays begun, the rest of the text follows
  // as content, and the whole parse (the non-streaming answer) has no call at all.
  const std::string text = "<tool_call>\n{\"name\": \"add\", \"arguments\": {\"a\": 1";
  Streamed s = stream(make_hermes_tool_parser, {text.substr(0, 30), text.substr(30)});
  ASSERT_EQ(s.calls.size(), 1u);
  EXPECT_EQ(s.calls[0].name, "add");
  EXPECT_EQ(s.content, text);
  EXPECT_TRUE(parse_tool_calls(*make_hermes_tool_parser(), text).calls.empty());
}

TEST(ToolParser, InvalidUtf8InArgumentsIsContent) {
  // Found by fuzz_tool_parser: the scanner passed a string with a stray byte, nlohmann refuses it.
  const std::string text = "  {\"city\": \"Z\\u00fcri\xe3h\", \"n\": -0.5}";
  ToolParse parse = parse_tool_calls(*make_named_tool_parser("f"), text);
  EXPECT_TRUE(parse.calls.empty());
  EXPECT_EQ(parse.content, text);
}

TEST(ToolParser, KnownNamesCreateParsers) {
  for (const std::string& name : ToolParser::known_names()) EXPECT_NE(ToolParser::create(name), nullptr) << name;
  EXPECT_EQ(ToolParser::create("mistral"), nullptr);
  EXPECT_EQ(ToolParser::known_names_text(), "deepseek_v3, deepseek_v31, hermes, llama3_json");
}

TEST(ToolParser, CallIdsAreDistinct) {
  std::map<std::string, int> seen;
  for (int i = 0; i < 1000; ++i) ++seen[make_tool_call_id()];
  EXPECT_EQ(seen.size(), 1000u);
}

}  // namespace
}  // namespace troupe::http
