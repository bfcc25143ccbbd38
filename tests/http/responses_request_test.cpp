// parse_responses_request: POST /v1/responses bodies become the chat path's OpenAIRequest; every
// bad field is invalid_argument naming it; refused features say so; ignored fields are listed.
#include <gtest/gtest.h>

#include "http/responses_request.hpp"

namespace troupe::http {
namespace {

using nlohmann::json;

json base() { return json{{"model", "m"}, {"input", "What is 2 + 2?"}}; }

// The parse error's param and message, or ("", "") when it parsed.
std::pair<std::string, std::string> error_of(const json& body) {
  std::string param;
  Result<ResponsesRequest> r = parse_responses_request(body, param);
  if (r.ok()) return {"", ""};
  EXPECT_EQ(r.error().code, ErrorCode::invalid_argument);
  return {param, r.error().message};
}

TEST(ResponsesRequest, StringInputAndInstructionsBecomeChatMessages) {
  json body = base();
  body["instructions"] = "Be brief.";
  body["max_output_tokens"] = 32;
  body["temperature"] = 0;
  body["top_p"] = 0.5;
  body["stream"] = true;
  std::string param;
  Result<ResponsesRequest> r = parse_responses_request(body, param);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const json& m = r->chat.messages;
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0]["role"], "system");
  EXPECT_EQ(m[0]["content"], "Be brief.");
  EXPECT_EQ(m[1]["role"], "user");
  EXPECT_EQ(m[1]["content"], "What is 2 + 2?");
  EXPECT_EQ(r->chat.params.max_tokens, 32);
  EXPECT_TRUE(r->chat.max_tokens_given);
  EXPECT_EQ(r->chat.params.temperature, 0.0);
  EXPECT_EQ(r->chat.params.top_p, 0.5);
  EXPECT_TRUE(r->chat.stream);
  EXPECT_EQ(r->instructions, "Be brief.");
  EXPECT_TRUE(r->chat.params.constraint.is_none());
  EXPECT_TRUE(r->ignored_fields.empty());
  EXPECT_TRUE(r->store);  // OpenAI's default
  EXPECT_TRUE(r->previous_response_id.empty());
  ASSERT_EQ(r->input_messages.size(), 1u);  // the input alone, for the stored conversation
  EXPECT_EQ(r->input_messages[0]["content"], "What is 2 + 2?");
}

TEST(ResponsesRequest, MessageItemsWithPartsRolesAndReasoningItems) {
  json body = base();
  body["input"] = json::array(
      {{{"role", "developer"}, {"content", "Answer in French."}},
       {{"type", "message"}, {"role", "user"}, {"content", {{{"type", "input_text"}, {"text", "Hello "}},
                                                              {{"type", "input_text"}, {"text", "there"}}}}},
       {{"type", "reasoning"}, {"id", "rs_1"}, {"summary", json::array()}},
       {{"role", "assistant"}, {"content", {{{"type", "output_text"}, {"text", "Bonjour"}, {"annotations", json::array()}}}}},
       {{"role", "user"}, {"content", "Again, naïvely: «ok»"}}});
  std::string param;
  Result<ResponsesRequest> r = parse_responses_request(body, param);
  ASSERT_TRUE(r.ok()) << r.error().message;
  const json& m = r->chat.messages;
  ASSERT_EQ(m.size(), 4u);  // the reasoning item is dropped
  EXPECT_EQ(m[0], (json{{"role", "system"}, {"content", "Answer in French."}}));
  EXPECT_EQ(m[1], (json{{"role", "user"}, {"content", "Hello there"}}));
  EXPECT_EQ(m[2], (json{{"role", "assistant"}, {"content", "Bonjour"}}));
  EXPECT_EQ(m[3]["content"], "Again, naïvely: «ok»");
}

TEST(ResponsesRequest, TextFormatBecomesTheOutputConstraint) {
  json schema{{"type", "object"}, {"properties", {{"n", {{"type", "integer"}}}}}, {"required", {"n"}}};
  json body = base();
  body["text"] = {{"format", {{"type", "json_schema"}, {"name", "answer"}, {"schema", schema}, {"strict", true}}}};
  std::string param;
  Result<ResponsesRequest> r = parse_responses_request(body, param);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->chat.params.constraint.kind, OutputConstraint::Kind::json_schema);
  EXPECT_EQ(json::parse(r->chat.params.constraint.spec), schema);
  EXPECT_EQ(r->text_format["name"], "answer");

  body["text"] = {{"format", {{"type", "json_object"}}}};
  r = parse_responses_request(body, param);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->chat.params.constraint.kind, OutputConstraint::Kind::json_object);

  body["text"] = {{"format", {{"type", "text"}}}, {"verbosity", "low"}};
  r = parse_responses_request(body, param);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->chat.params.constraint.is_none());
}

// Flat function tools, tool_choice and parallel_tool_calls become the chat route's; function_call
// and function_call_output items become the assistant's calls (one turn for adjacent calls) and
// the tool messages.
TEST(ResponsesRequest, FunctionToolsAndCallItemsBecomeChatTools) {
  json params{{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}};
  json body = base();
  body["tools"] = json::array({{{"type", "function"}, {"name", "get_weather"}, {"description", "Weather"},
                                {"parameters", params}, {"strict", true}}});
  body["tool_choice"] = {{"type", "function"}, {"name", "get_weather"}};
  body["parallel_tool_calls"] = false;
  body["input"] = json::array(
      {{{"role", "user"}, {"content", "Weather in Oslo and Rome?"}},
       {{"type", "function_call"}, {"id", "fc_1"}, {"call_id", "call_a"}, {"name", "get_weather"},
        {"arguments", R"({"city": "Oslo"})"}, {"status", "completed"}},
       {{"type", "function_call"}, {"call_id", "call_b"}, {"name", "get_weather"}, {"arguments", R"({"city": "Rome"})"}},
       {{"type", "function_call_output"}, {"call_id", "call_a"}, {"output", "sunny"}},
       {{"type", "function_call_output"}, {"call_id", "call_b"}, {"output", {{{"type", "input_text"}, {"text", "rain"}}}}}});
  std::string param;
  Result<ResponsesRequest> r = parse_responses_request(body, param);
  ASSERT_TRUE(r.ok()) << r.error().message << " (" << param << ")";
  ASSERT_EQ(r->chat.tools.size(), 1u);
  EXPECT_EQ(r->chat.tools[0], (json{{"type", "function"},
                                    {"function", {{"name", "get_weather"}, {"description", "Weather"},
                                                  {"parameters", params}, {"strict", true}}}}));
  EXPECT_EQ(r->chat.tool_choice.mode, ToolChoice::Mode::named);
  EXPECT_EQ(r->chat.tool_choice.name, "get_weather");
  EXPECT_FALSE(r->chat.tool_choice.parallel);
  EXPECT_FALSE(r->parallel_tool_calls);
  EXPECT_EQ(r->tools, body["tools"]);  // echoed as given
  const json& m = r->chat.messages;
  ASSERT_EQ(m.size(), 4u) << m.dump();
  EXPECT_EQ(m[1]["role"], "assistant");
  EXPECT_TRUE(m[1]["content"].is_null());
  ASSERT_EQ(m[1]["tool_calls"].size(), 2u);
  EXPECT_EQ(m[1]["tool_calls"][0], (json{{"id", "call_a"}, {"type", "function"},
                                         {"function", {{"name", "get_weather"}, {"arguments", R"({"city": "Oslo"})"}}}}));
  EXPECT_EQ(m[1]["tool_calls"][1]["id"], "call_b");
  EXPECT_EQ(m[2], (json{{"role", "tool"}, {"tool_call_id", "call_a"}, {"content", "sunny"}}));
  EXPECT_EQ(m[3], (json{{"role", "tool"}, {"tool_call_id", "call_b"}, {"content", "rain"}}));
  EXPECT_TRUE(r->ignored_fields.empty());
}

TEST(ResponsesRequest, EachBadFieldIsNamed) {
  struct Case {
    json patch;
    std::string param;
  };
  const std::vector<Case> cases = {
      {{{"model", 3}}, "model"},
      {{{"input", nullptr}}, "input"},
      {{{"input", 5}}, "input"},
      {{{"input", json::array()}}, "input"},
      {{{"input", {"hi"}}}, "input[0]"},
      {{{"input", {{{"content", "hi"}}}}}, "input[0].role"},
      {{{"input", {{{"role", "tool"}, {"content", "hi"}}}}}, "input[0].role"},
      {{{"input", {{{"role", "user"}}}}}, "input[0].content"},
      {{{"input", {{{"role", "user"}, {"content", 7}}}}}, "input[0].content"},
      {{{"input", {{{"role", "user"}, {"content", {{{"type", "input_text"}}}}}}}}, "input[0].content[0].text"},
      {{{"input", {{{"role", "user"}, {"content", {{{"type", "input_image"}, {"image_url", "x"}}}}}}}},
       "input[0].content[0]"},
      {{{"input", {{{"role", "user"}, {"content", {{{"type", "video"}}}}}}}}, "input[0].content[0].type"},
      {{{"input", {{{"type", "file_search_call"}, {"id", "c"}}}}}, "input[0].type"},
      {{{"input", {{{"type", "function_call_output"}, {"output", "x"}}}}}, "input[0].call_id"},
      {{{"input", {{{"type", "function_call_output"}, {"call_id", "c"}, {"output", 5}}}}}, "input[0].output"},
      {{{"input", {{{"type", "function_call"}, {"call_id", "c"}, {"name", "f"}}}}}, "input[0].arguments"},
      {{{"instructions", 1}}, "instructions"},
      {{{"max_output_tokens", 0}}, "max_output_tokens"},
      {{{"max_output_tokens", "many"}}, "max_output_tokens"},
      {{{"temperature", -1}}, "temperature"},
      {{{"top_p", 2}}, "top_p"},
      {{{"stream", "yes"}}, "stream"},
      {{{"text", "json"}}, "text"},
      {{{"text", {{"format", {{"type", "xml"}}}}}}, "text.format.type"},
      {{{"text", {{"format", {{"type", "json_schema"}, {"name", "a"}}}}}}, "text.format.schema"},
      {{{"text", {{"format", {{"type", "json_schema"}, {"schema", json::object()}}}}}}, "text.format.name"},
      {{{"text", {{"format", {{"type", "json_schema"}, {"name", "a"}, {"schema", json::object()}, {"strict", 1}}}}}},
       "text.format.strict"},
      {{{"previous_response_id", 5}}, "previous_response_id"},
      {{{"previous_response_id", ""}}, "previous_response_id"},
      {{{"conversation", "conv_1"}}, "conversation"},
      {{{"background", true}}, "background"},
      {{{"tools", {{{"type", "web_search"}}}}}, "tools[0].type"},
      {{{"tools", {{{"type", "function"}}}}}, "tools[0].name"},
      {{{"tools", {{{"type", "function"}, {"name", "f"}, {"parameters", "x"}}}}}, "tools[0].parameters"},
      {{{"tools", {{{"type", "function"}, {"name", "f"}}}}, {"tool_choice", {{"type", "function"}, {"name", "g"}}}},
       "tool_choice.name"},
      {{{"tool_choice", {{"type", "file_search"}}}}, "tool_choice"},
      {{{"parallel_tool_calls", "no"}}, "parallel_tool_calls"},
      {{{"tool_choice", "required"}}, "tool_choice"},
      {{{"store", "no"}}, "store"},
      {{{"metadata", {{"k", 1}}}}, "metadata.k"},
      {{{"user", 5}}, "user"},
      {{{"reasoning", {{"effort", 3}}}}, "reasoning.effort"},
      {{{"truncation", "sometimes"}}, "truncation"},
  };
  for (const Case& c : cases) {
    json body = base();
    body.update(c.patch);
    auto [param, message] = error_of(body);
    EXPECT_EQ(param, c.param) << c.patch.dump() << " -> " << message;
    EXPECT_NE(message.find(c.param), std::string::npos) << c.patch.dump() << " -> " << message;
  }
  json no_model = base();
  no_model.erase("model");
  EXPECT_EQ(error_of(no_model).first, "model");
  json no_input = base();
  no_input.erase("input");
  EXPECT_EQ(error_of(no_input).first, "input");
}

TEST(ResponsesRequest, StoreAndKnownFieldsAreAcceptedUnknownOnesListed) {
  json body = base();
  body["store"] = false;
  body["previous_response_id"] = "resp_7";
  body["include"] = json::array();
  body["truncation"] = "disabled";
  body["tool_choice"] = "auto";
  body["tools"] = json::array();
  body["reasoning"] = {{"effort", "high"}, {"summary", "auto"}};
  body["metadata"] = {{"trace", "t1"}};
  body["user"] = "u1";
  body["frobnicate"] = 1;
  std::string param;
  Result<ResponsesRequest> r = parse_responses_request(body, param);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r->store);
  EXPECT_EQ(r->previous_response_id, "resp_7");
  EXPECT_EQ(r->reasoning["effort"], "high");
  EXPECT_EQ(r->metadata["trace"], "t1");
  EXPECT_EQ(r->user, "u1");
  const std::vector<std::string> expected = {"frobnicate (unknown)", "include", "truncation"};
  EXPECT_EQ(r->ignored_fields, expected);
}

}  // namespace
}  // namespace troupe::http
