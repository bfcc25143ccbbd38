// http/structured_output_request: response_format, structured_outputs and guided_* become one
// OutputConstraint; bad ones are 400s naming the field.
#include <gtest/gtest.h>

#include "http/openai_request.hpp"

namespace troupe::http {
namespace {

using nlohmann::json;
using Kind = OutputConstraint::Kind;

Result<OpenAIRequest> chat(json extra) {
  json body = {{"model", "m"}, {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  for (auto& [k, v] : extra.items()) body[k] = v;
  std::string param;
  auto r = parse_chat_request(body, param, GenerationDefaults{});
  if (!r.ok()) {
    Error e = r.error();
    e.param = param;
    return e;
  }
  return r;
}

TEST(StructuredOutputRequest, EachFieldBecomesAConstraint) {
  auto none = chat({{"response_format", {{"type", "text"}}}});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->params.constraint.is_none());

  auto obj = chat({{"response_format", {{"type", "json_object"}}}});
  ASSERT_TRUE(obj.ok());
  EXPECT_EQ(obj->params.constraint.kind, Kind::json_object);

  json schema = {{"type", "object"}, {"properties", {{"a", {{"type", "integer"}}}}}, {"required", {"a"}}};
  auto js = chat({{"response_format", {{"type", "json_schema"}, {"json_schema", {{"name", "x"}, {"schema", schema}, {"strict", true}}}}}});
  ASSERT_TRUE(js.ok()) << js.error().message;
  EXPECT_EQ(js->params.constraint.kind, Kind::json_schema);
  EXPECT_EQ(json::parse(js->params.constraint.spec), schema);

  auto so = chat({{"structured_outputs", {{"regex", "[0-9]+"}}}});
  ASSERT_TRUE(so.ok());
  EXPECT_EQ(so->params.constraint.kind, Kind::regex);
  EXPECT_EQ(so->params.constraint.spec, "[0-9]+");

  auto gj = chat({{"guided_json", schema.dump()}, {"guided_decoding_backend", "xgrammar"}});
  ASSERT_TRUE(gj.ok());
  EXPECT_EQ(gj->params.constraint.kind, Kind::json_schema);

  auto gc = chat({{"guided_choice", {"yes", "no"}}});
  ASSERT_TRUE(gc.ok());
  EXPECT_EQ(gc->params.constraint.kind, Kind::choice);
  EXPECT_EQ(json::parse(gc->params.constraint.spec), json({"yes", "no"}));

  std::string param;
  auto completion = parse_completion_request(json::parse(R"({"model":"m","prompt":"x","guided_regex":"a|b"})"), param,
                                             GenerationDefaults{});
  ASSERT_TRUE(completion.ok()) << completion.error().message;
  EXPECT_EQ(completion->params.constraint.kind, Kind::regex);
}

TEST(StructuredOutputRequest, BadOnesAre400sNamingTheField) {
  struct Bad {
    const char* extra;  // fields added to a valid chat request, as JSON
    const char* param;
    const char* needle;
  } bad[] = {
      {R"({"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"object","not":{}}}}})", "response_format", "'not'"},
      {R"({"response_format":{"type":"xml"}})", "response_format", "xml"},
      {R"({"response_format":{"type":"json_schema"}})", "response_format", "json_schema"},
      {R"({"response_format":{"type":"json_object"},"guided_regex":"a"})", "guided_regex", "combined"},
      {R"({"structured_outputs":{"regex":"a","choice":["b"]}})", "structured_outputs", "only one"},
      {R"({"structured_outputs":{"grammar":"root ::= x"}})", "structured_outputs.grammar", "not supported"},
      {R"({"guided_regex":"(a"})", "guided_regex", "missing ')'"},
      {R"({"guided_choice":[]})", "guided_choice", "non-empty"},
      {R"({"guided_json":"{not json"})", "guided_json", "schema"},
      {R"({"guided_grammar":"x"})", "guided_grammar", "not supported"},
  };
  for (const auto& b : bad) {
    auto r = chat(json::parse(b.extra));
    ASSERT_FALSE(r.ok()) << b.extra;
    EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
    EXPECT_EQ(r.error().param, b.param) << b.extra;
    EXPECT_NE(r.error().message.find(b.needle), std::string::npos) << r.error().message;
  }
}

}  // namespace
}  // namespace troupe::http
