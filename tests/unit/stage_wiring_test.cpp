// What a stage checks before it connects (pipeline/stage_wiring.hpp): the wiring is of its own
// group epoch (a restarted group never uses an old id), one NCCL id of NCCL's size and one GPU
// per stage, and no two linked stages on one GPU (NCCL would hang in init: refused by name).
#include <gtest/gtest.h>

#include "pipeline/stage_wiring.hpp"

namespace troupe::cluster {
namespace {

ModelStageSpec stage(int64_t index, int64_t num_stages, const std::string& transport = "nccl") {
  ModelStageSpec spec;
  spec.stage_index = index;
  spec.num_stages = num_stages;
  spec.stage_transport = transport;
  spec.group_id = 4;
  spec.epoch = 9;
  return spec;
}

StageWiring nccl_wiring(int64_t num_stages) {
  StageWiring wiring;
  wiring.key = StageLinkKey{4, 9};
  wiring.num_kv_blocks = 10;
  for (int64_t k = 0; k < num_stages; ++k) {
    wiring.data_addresses.push_back("");
    wiring.nccl_unique_ids.push_back(std::vector<uint8_t>(NcclLinkOps::kUniqueIdBytes, uint8_t(k + 1)));
    wiring.device_ids.push_back("node-a/pci:0000:" + std::to_string(k));
  }
  return wiring;
}

std::string refusal(const ModelStageSpec& spec, const StageWiring& wiring) {
  Status status = check_stage_wiring(spec, wiring);
  if (status.ok()) return "";
  EXPECT_EQ(status.error().code, ErrorCode::invalid_argument);
  return status.error().message;
}

TEST(StageWiring, AWiringOfThisGroupEpochPasses) {
  for (int64_t k = 0; k < 3; ++k) EXPECT_EQ(refusal(stage(k, 3), nccl_wiring(3)), "") << "stage " << k;
  StageWiring host;
  host.key = StageLinkKey{4, 9};
  host.data_addresses = {"a:1", "b:2"};
  EXPECT_EQ(refusal(stage(1, 2, "host"), host), "") << "host wiring carries no NCCL ids";
}

TEST(StageWiring, AnotherEpochOrGroupIsRefusedBeforeAnyIdIsUsed) {
  StageWiring stale = nccl_wiring(2);
  stale.key.epoch = 8;  // the group restarted since this wire_group was sent
  EXPECT_NE(refusal(stage(1, 2), stale).find("epoch 8 reached a stage of group 4 epoch 9"), std::string::npos)
      << refusal(stage(1, 2), stale);
  StageWiring newer = nccl_wiring(2);
  newer.key.epoch = 10;
  EXPECT_NE(refusal(stage(0, 2), newer), "");
  StageWiring other = nccl_wiring(2);
  other.key.group_id = 5;
  EXPECT_NE(refusal(stage(0, 2), other), "");
  StageWiring host;
  host.key = StageLinkKey{4, 8};
  host.data_addresses = {"a:1", "b:2"};
  EXPECT_NE(refusal(stage(0, 2, "host"), host), "") << "the host transport checks the epoch too";
}

TEST(StageWiring, IdsAndDevicesMustBeOnePerStageOfNcclsSize) {
  StageWiring missing = nccl_wiring(2);
  missing.nccl_unique_ids.pop_back();
  EXPECT_NE(refusal(stage(0, 2), missing).find("1 NCCL ids"), std::string::npos) << refusal(stage(0, 2), missing);
  StageWiring cut = nccl_wiring(2);
  cut.nccl_unique_ids[1].resize(64);
  EXPECT_NE(refusal(stage(0, 2), cut).find("has 64 bytes"), std::string::npos) << refusal(stage(0, 2), cut);
  StageWiring no_gpu = nccl_wiring(2);
  no_gpu.device_ids[0] = "";
  EXPECT_NE(refusal(stage(1, 2), no_gpu).find("computes on no GPU"), std::string::npos);
  StageWiring addresses = nccl_wiring(2);
  addresses.data_addresses.pop_back();
  EXPECT_NE(refusal(stage(1, 2), addresses), "");
}

TEST(StageWiring, TwoLinkedStagesOnOneGpuAreRefusedNamingThem) {
  StageWiring shared = nccl_wiring(2);
  shared.device_ids[1] = shared.device_ids[0];
  for (int64_t k = 0; k < 2; ++k) {
    const std::string why = refusal(stage(k, 2), shared);
    EXPECT_NE(why.find("stages 0 and 1 share GPU node-a/pci:0000:0"), std::string::npos) << why;
    EXPECT_NE(why.find("--stage-transport host"), std::string::npos) << why;
  }
  // Three stages, 0 and 2 on one GPU: they are linked too (the last sends the first its logits);
  // stage 1 links neither of them to its own GPU and may connect.
  StageWiring ring = nccl_wiring(3);
  ring.device_ids[2] = ring.device_ids[0];
  EXPECT_NE(refusal(stage(0, 3), ring), "");
  EXPECT_NE(refusal(stage(2, 3), ring), "");
  EXPECT_EQ(refusal(stage(1, 3), ring), "");
  // The same bus id on two machines is two GPUs.
  StageWiring two_hosts = nccl_wiring(2);
  two_hosts.device_ids = {"node-a/pci:0000:1b", "node-b/pci:0000:1b"};
  EXPECT_EQ(refusal(stage(0, 2), two_hosts), "");
}

TEST(StageWiring, ThePlanCarriesTheTransportToEveryStage) {
  Config head;
  head.pipeline_parallel_size = 2;
  head.stage_transport = "nccl";
  auto specs = plan_stages(head, 4);
  ASSERT_TRUE(specs.ok());
  for (const auto& spec : *specs) {
    EXPECT_EQ(spec.stage_transport, "nccl");
    EXPECT_TRUE(spec.uses_nccl());
    EXPECT_EQ(stage_config(spec, Config{}).stage_transport, "nccl") << "the worker runs the head's transport";
  }
  head.pipeline_parallel_size = 1;
  auto one = plan_stages(head, 4);
  ASSERT_TRUE(one.ok());
  EXPECT_FALSE((*one)[0].uses_nccl()) << "one stage has no link";
}

}  // namespace
}  // namespace troupe::cluster
