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
  start.spec.stage_transport = "nccl";
  start.spec.group_id = 3;
  start.spec.epoch = 17;
  start_group copy = round_trip(start);
  EXPECT_EQ(copy.spec.stage_transport, "nccl");
  EXPECT_EQ(copy.spec.group_id, 3);
  EXPECT_EQ(copy.spec.epoch, 17u);
  EXPECT_EQ(copy.spec, start.spec);
  EXPECT_EQ(copy.spec.engine, unusual_engine_args());
  EXPECT_EQ(copy.members, start.members);
  EXPECT_EQ(copy.epoch, 17u);
}

// Bytes of every value (0, 0xff, ...), as an ncclUniqueId's are.
std::vector<uint8_t> nccl_id(uint8_t seed) {
  std::vector<uint8_t> id(NcclLinkOps::kUniqueIdBytes);
  for (size_t i = 0; i < id.size(); ++i) id[i] = uint8_t(i * 37 + seed);
  return id;
}

TEST(ClusterMessages, TheNcclIdsTravelWholeFromStagePreparedThroughWireGroup) {
  stage_prepared prepared{7, 3, 17, "", 512, "", nccl_id(1), "gpu-node-2/pci:0000:1b:00.0"};
  stage_prepared got = round_trip(prepared);
  EXPECT_EQ(got.nccl_unique_id, nccl_id(1));
  EXPECT_EQ(got.device_id, "gpu-node-2/pci:0000:1b:00.0");
  EXPECT_EQ(got.epoch, 17u);
  EXPECT_EQ(got.max_kv_blocks, 512);

  wire_group wire{3, 17, {"", ""}, 400, {nccl_id(1), nccl_id(200)}, {"a/pci:1", "b/pci:1"}};
  wire_group copy = round_trip(wire);
  ASSERT_EQ(copy.nccl_unique_ids.size(), 2u);
  EXPECT_EQ(copy.nccl_unique_ids[0], nccl_id(1));
  EXPECT_EQ(copy.nccl_unique_ids[1], nccl_id(200));
  EXPECT_EQ(copy.device_ids, wire.device_ids);

  // Stage 1 of group 3 epoch 17 wires with it; after a restart (epoch 18) the same message is refused.
  cluster::ModelStageSpec spec;
  spec.stage_index = 1;
  spec.num_stages = 2;
  spec.stage_transport = "nccl";
  spec.group_id = 3;
  spec.epoch = 17;
  const cluster::StageWiring wiring = stage_wiring_of(copy);
  EXPECT_EQ(wiring.key.epoch, 17u);
  Status fits = cluster::check_stage_wiring(spec, wiring);
  EXPECT_TRUE(fits.ok()) << fits.error().message;
  spec.epoch = 18;
  Status stale = cluster::check_stage_wiring(spec, wiring);
  ASSERT_FALSE(stale.ok());
  EXPECT_NE(stale.error().message.find("epoch 17 reached a stage of group 3 epoch 18"), std::string::npos)
      << stale.error().message;

  stage_failed failed{7, 3, 17, "ncclSend: ncclRemoteError"};
  stage_failed failed_copy = round_trip(failed);
  EXPECT_EQ(failed_copy.reason, failed.reason);
  EXPECT_EQ(failed_copy.epoch, 17u);
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
