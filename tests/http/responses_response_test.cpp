// Response objects and the event stream of /v1/responses, built from choice deltas directly.
#include <gtest/gtest.h>

#include "http/responses_response.hpp"
#include "tests/http/responses_events.hpp"

namespace troupe::http {
namespace {

using nlohmann::json;
using testing::parse_response_events;

ResponseSkeleton skeleton() {
  ResponsesRequest request;
  request.instructions = "Be brief.";
  request.metadata = json{{"k", "v"}};
  request.chat.params.max_tokens = 64;
  request.chat.max_tokens_given = true;
  request.chat.params.temperature = 0.0;
  return ResponseSkeleton::of(request, "resp_00ab", 1700000000, "troupe-demo");
}

ChoiceDelta delta(std::string reasoning, std::string content) {
  ChoiceDelta d;
  d.reasoning = std::move(reasoning);
  d.content = std::move(content);
  return d;
}

std::vector<std::string> types_of(const std::vector<json>& events) {
  std::vector<std::string> types;
  for (const json& e : events) types.push_back(e["type"]);
  return types;
}

TEST(ResponsesResponse, ObjectEchoesTheRequestAndMapsStatus) {
  const ResponseSkeleton s = skeleton();
  EXPECT_EQ(s.item_id("msg"), "msg_00ab");
  EXPECT_EQ(s.item_id("rs"), "rs_00ab");
  json usage = responses_usage_json(10, 7, 3, 4);
  json out = json::array({message_item_json(s.item_id("msg"), "4", "completed")});
  json r = response_json(s, FinishReason::stop, out, usage);
  EXPECT_EQ(r["id"], "resp_00ab");
  EXPECT_EQ(r["object"], "response");
  EXPECT_EQ(r["created_at"], 1700000000);
  EXPECT_EQ(r["status"], "completed");
  EXPECT_TRUE(r["incomplete_details"].is_null());
  EXPECT_TRUE(r["error"].is_null());
  EXPECT_EQ(r["model"], "troupe-demo");
  EXPECT_EQ(r["instructions"], "Be brief.");
  EXPECT_EQ(r["max_output_tokens"], 64);
  EXPECT_EQ(r["metadata"]["k"], "v");
  EXPECT_EQ(r["temperature"], 0.0);
  EXPECT_EQ(r["store"], true);  // the request's default
  EXPECT_TRUE(r["previous_response_id"].is_null());
  EXPECT_EQ(r["text"]["format"]["type"], "text");
  EXPECT_EQ(r["usage"]["total_tokens"], 17);
  EXPECT_EQ(r["usage"]["output_tokens_details"]["reasoning_tokens"], 3);
  EXPECT_EQ(r["usage"]["input_tokens_details"]["cached_tokens"], 4);
  const json& part = r["output"][0]["content"][0];
  EXPECT_EQ(part, (json{{"type", "output_text"}, {"text", "4"}, {"annotations", json::array()}}));

  json incomplete = response_json(s, FinishReason::length, out, usage);
  EXPECT_EQ(incomplete["status"], "incomplete");
  EXPECT_EQ(incomplete["incomplete_details"]["reason"], "max_output_tokens");
  EXPECT_EQ(response_json(s, FinishReason::abort, out, usage)["status"], "cancelled");
}

TEST(ResponsesResponse, StreamWithReasoningThenText) {
  ResponseEventStream stream(skeleton());
  std::string sse = stream.start();
  sse += stream.push(delta("Add 2 ", ""));
  sse += stream.push(delta("and 2.", ""));
  sse += stream.push(delta("", ""));  // nothing: no event
  sse += stream.push(delta("", "4"));
  sse += stream.push(delta("", "."));
  sse += stream.finish(FinishReason::stop, responses_usage_json(5, 9, 4));
  std::vector<json> events = parse_response_events(sse);
  const std::vector<std::string> expected = {
      "response.created",           "response.in_progress",       "response.output_item.added",
      "response.content_part.added", "response.reasoning_text.delta", "response.reasoning_text.delta",
      "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
      "response.output_item.added", "response.content_part.added", "response.output_text.delta",
      "response.output_text.delta", "response.output_text.done",  "response.content_part.done",
      "response.output_item.done",  "response.completed"};
  ASSERT_EQ(types_of(events), expected);
  EXPECT_EQ(stream.num_events(), int64_t(expected.size()));
  for (size_t i = 0; i < events.size(); ++i) EXPECT_EQ(events[i]["sequence_number"], int64_t(i));
  EXPECT_EQ(events[0]["response"]["status"], "in_progress");
  EXPECT_TRUE(events[0]["response"]["output"].empty());
  // Reasoning is output 0 (rs_), the message output 1 (msg_).
  EXPECT_EQ(events[2]["item"]["type"], "reasoning");
  EXPECT_EQ(events[4]["item_id"], "rs_00ab");
  EXPECT_EQ(events[4]["output_index"], 0);
  EXPECT_EQ(events[6]["text"], "Add 2 and 2.");
  EXPECT_EQ(events[8]["item"]["content"][0]["text"], "Add 2 and 2.");
  EXPECT_EQ(events[9]["item"]["type"], "message");
  EXPECT_EQ(events[9]["output_index"], 1);
  EXPECT_EQ(events[11]["item_id"], "msg_00ab");
  EXPECT_EQ(events[11]["output_index"], 1);
  EXPECT_EQ(events[11]["content_index"], 0);
  EXPECT_EQ(events[11]["delta"], "4");
  EXPECT_EQ(events[13]["text"], "4.");
  EXPECT_EQ(events[15]["item"]["status"], "completed");
  const json& done = events.back()["response"];
  EXPECT_EQ(done["status"], "completed");
  ASSERT_EQ(done["output"].size(), 2u);
  EXPECT_EQ(done["output"][0]["content"][0]["text"], "Add 2 and 2.");
  EXPECT_EQ(done["output"][1]["content"][0]["text"], "4.");
  EXPECT_EQ(done["usage"]["output_tokens"], 9);
  EXPECT_EQ(stream.content(), "4.");
  EXPECT_EQ(stream.reasoning(), "Add 2 and 2.");
}

TEST(ResponsesResponse, StreamCutByTheTokenBudgetIsIncompleteAndStillHasAMessage) {
  ResponseEventStream stream(skeleton());
  std::string sse = stream.start() + stream.push(delta("thinking", ""));
  sse += stream.finish(FinishReason::length, responses_usage_json(5, 64, 64));
  std::vector<json> events = parse_response_events(sse);
  ASSERT_FALSE(events.empty());
  const json& last = events.back();
  EXPECT_EQ(last["type"], "response.incomplete");
  EXPECT_EQ(last["response"]["status"], "incomplete");
  EXPECT_EQ(last["response"]["incomplete_details"]["reason"], "max_output_tokens");
  ASSERT_EQ(last["response"]["output"].size(), 2u);
  EXPECT_EQ(last["response"]["output"][1]["status"], "incomplete");
  EXPECT_EQ(last["response"]["output"][1]["content"][0]["text"], "");
}

TEST(ResponsesResponse, PlainTextStreamAndAFailure) {
  ResponseEventStream stream(skeleton());
  std::string sse = stream.start() + stream.push(delta("", "partial"));
  sse += stream.fail("server_error", "the device failed", responses_usage_json(5, 1, 0));
  std::vector<json> events = parse_response_events(sse);
  const std::vector<std::string> expected = {"response.created",           "response.in_progress",
                                             "response.output_item.added", "response.content_part.added",
                                             "response.output_text.delta", "error",
                                             "response.failed"};
  ASSERT_EQ(types_of(events), expected);
  EXPECT_EQ(events[2]["output_index"], 0);  // no reasoning item: the message is output 0
  EXPECT_EQ(events[5]["message"], "the device failed");
  EXPECT_EQ(events[5]["code"], "server_error");
  EXPECT_EQ(events[6]["response"]["status"], "failed");
  EXPECT_EQ(events[6]["response"]["error"]["message"], "the device failed");
}

}  // namespace
}  // namespace troupe::http
