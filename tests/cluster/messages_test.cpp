// The cluster's CAF messages survive serialization (what a remote worker receives) unchanged:
// EngineArgs travels inside start_group whole, through its one inspect overload.
#include <gtest/gtest.h>

#include <vector>

#include <caf/all.hpp>

#include "actors/messages.hpp"
#include "tests/unit/unusual_engine_args.hpp"

namespace troupe {
namespace {

template <class T>
T round_trip(T value) {
  std::vector<char> buffer;
  caf::binary_serializer sink{nullptr, buffer};
  EXPECT_FALSE(sink(value));
  T copy;
  caf::binary_deserializer source{nullptr, buffer};
  EXPECT_FALSE(source(copy));
  return copy;
}

TEST(ClusterMessages, EngineArgsRoundTripsThroughInspect) {
  EXPECT_EQ(round_trip(unusual_engine_args()), unusual_engine_args());
  EXPECT_EQ(round_trip(EngineArgs{}), EngineArgs{});
}

TEST(ClusterMessages, StartGroupCarriesTheStageSpecWhole) {
  start_group start;
  start.group_id = 3;
  start.epoch = 17;
  start.stage_index = 1;
  start.members = {4, 5};
  start.spec.engine = unusual_engine_args();
  start.spec.stage_index = 1;
  start.spec.num_stages = 2;
  start.spec.layer_begin = 30;
  start.spec.layer_end = 61;
  start_group copy = round_trip(start);
  EXPECT_EQ(copy.spec, start.spec);
  EXPECT_EQ(copy.spec.engine, unusual_engine_args());
  EXPECT_EQ(copy.members, start.members);
  EXPECT_EQ(copy.epoch, 17u);
}

TEST(ClusterMessages, FrontDoorMessagesRoundTrip) {
  publish_cluster state;
  state.cluster.enabled = true;
  state.cluster.num_nodes = 4;
  state.cluster.groups.push_back(GroupStats{1, "ready", 2, 1, "node 3 lost (connection lost)", 2, 5});
  state.num_waiting = 3;
  publish_cluster copy = round_trip(state);
  EXPECT_EQ(copy.cluster.num_nodes, 4);
  ASSERT_EQ(copy.cluster.groups.size(), 1u);
  EXPECT_EQ(copy.cluster.groups[0].state, "ready");
  EXPECT_EQ(copy.cluster.groups[0].num_running, 5);
  EXPECT_EQ(copy.cluster.groups[0].last_error, "node 3 lost (connection lost)");
  EXPECT_EQ(copy.num_waiting, 3);

  route_request route;
  route.request.request_id = "r1";
  route.request.prompt_ids = {1, 2, 3};
  EXPECT_EQ(round_trip(route).request.prompt_ids, route.request.prompt_ids);
}

TEST(ClusterMessages, RequestFieldsOfSamplingParamsTravelToWorkers) {
  // logit_bias and min_tokens are applied by the leader's sampler: they must reach it.
  route_request route;
  route.request.params.logit_bias = {{7, -100.0f}, {42, 2.5f}};
  route.request.params.min_tokens = 5;
  route.request.params.stop_token_ids = {9};
  const route_request copy = round_trip(route);
  ASSERT_EQ(copy.request.params.logit_bias.size(), 2u);
  EXPECT_EQ(copy.request.params.logit_bias[1].token_id, 42);
  EXPECT_FLOAT_EQ(copy.request.params.logit_bias[1].bias, 2.5f);
  EXPECT_FLOAT_EQ(copy.request.params.logit_bias[0].bias, -100.0f);
  EXPECT_EQ(copy.request.params.min_tokens, 5);
  EXPECT_EQ(copy.request.params.stop_token_ids, route.request.params.stop_token_ids);
}

// Structured outputs reach a head's workers: the constraint travels inside SamplingParams.
TEST(ClusterMessages, TheOutputConstraintTravelsWithTheRequest) {
  route_request route;
  route.request.params.constraint = {OutputConstraint::Kind::json_schema, R"({"type":"object"})"};
  route.request.params.max_tokens = 77;
  const route_request copy = round_trip(route);
  EXPECT_EQ(copy.request.params.constraint.kind, OutputConstraint::Kind::json_schema);
  EXPECT_EQ(copy.request.params.constraint.spec, R"({"type":"object"})");
  EXPECT_EQ(copy.request.params.max_tokens, 77);
}

// prompt_logprobs: asked in the request, answered in the leader's output to the head.
TEST(ClusterMessages, PromptLogprobsTravelBothWays) {
  route_request route;
  route.request.params.prompt_logprobs = 3;
  EXPECT_EQ(round_trip(route).request.params.prompt_logprobs, 3);
  deliver_output out;
  out.request_id = "r1";
  out.output.prompt_logprobs.push_back(PromptLogprob{17, -1.25f, 4, {{3, -0.5f}, {9, -0.75f}}});
  const deliver_output copy = round_trip(out);
  ASSERT_EQ(copy.output.prompt_logprobs.size(), 1u);
  const PromptLogprob& entry = copy.output.prompt_logprobs[0];
  EXPECT_EQ(entry.token_id, 17);
  EXPECT_FLOAT_EQ(entry.logprob, -1.25f);
  EXPECT_EQ(entry.rank, 4);
  EXPECT_EQ(entry.top, (std::vector<std::pair<int32_t, float>>{{3, -0.5f}, {9, -0.75f}}));
}

}  // namespace
}  // namespace troupe
