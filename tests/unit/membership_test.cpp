#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cluster/membership.hpp"
#include "cluster/membership_status.hpp"

namespace troupe::cluster {
namespace {

using std::chrono::milliseconds;

const Clock::time_point t0 = Clock::time_point{} + std::chrono::hours(1);

JoinResult join(Membership& m, Clock::time_point now = t0) { return m.join("host", 100, -1, {}, now); }

TEST(Membership, NodesFillTheFirstGroupWithAFreeSlotAndFormingBumpsTheEpoch) {
  Membership m(2, 3);  // 2 replicas x 3 stages
  std::vector<JoinResult> joins;
  for (int i = 0; i < 7; ++i) joins.push_back(join(m));
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(joins[i].node_id, static_cast<NodeId>(i + 1)) << "ids are 1, 2, 3, ...";
    EXPECT_EQ(joins[i].group_id, i / 3);
    EXPECT_EQ(joins[i].stage_index, i % 3);
    EXPECT_EQ(joins[i].group_formed, i % 3 == 2);
  }
  EXPECT_EQ(joins[6].group_id, -1) << "all groups full";
  EXPECT_EQ(m.group(0).epoch, 1u);
  EXPECT_EQ(m.group(0).state, GroupState::loading);
  EXPECT_EQ(m.group(1).state, GroupState::loading);
  EXPECT_EQ(m.num_active_nodes(), 7);
}

TEST(Membership, ReadyOnceEveryMemberLoadedTheCurrentEpoch) {
  Membership m(1, 2);
  NodeId a = join(m).node_id, b = join(m).node_id;
  EXPECT_FALSE(*m.mark_loaded(a, 1));
  EXPECT_FALSE(*m.mark_loaded(b, 0)) << "a stale epoch does not count";
  EXPECT_TRUE(*m.mark_loaded(b, 1));
  EXPECT_EQ(m.group(0).state, GroupState::ready);
  EXPECT_FALSE(m.mark_loaded(99, 1).ok());
}

TEST(Membership, LosingAMemberRestartsTheWholeGroupWithANewEpoch) {
  Membership m(1, 3);
  NodeId a = join(m).node_id, b = join(m).node_id, c = join(m).node_id;
  for (NodeId id : {a, b, c}) (void)m.mark_loaded(id, 1);
  ASSERT_EQ(m.group(0).state, GroupState::ready);

  auto loss = m.mark_lost(b, t0 + milliseconds(10));
  ASSERT_TRUE(loss.ok());
  EXPECT_EQ(loss->group_id, 0);
  EXPECT_EQ(loss->old_epoch, 1u);
  EXPECT_EQ(loss->to_stop, (std::vector<NodeId>{a, c}));
  EXPECT_EQ(loss->new_state, GroupState::restarting);
  EXPECT_EQ(m.group(0).members, (std::vector<NodeId>{a, 0, c}));
  EXPECT_EQ(m.node(b)->state, NodeState::lost);
  EXPECT_FALSE(m.heartbeat(b, t0).ok()) << "a lost node must join again";
  EXPECT_FALSE(m.mark_lost(b, t0).ok()) << "lost twice";

  JoinResult back = join(m);
  EXPECT_GT(back.node_id, c) << "a rejoining node gets a fresh id";
  EXPECT_EQ(back.stage_index, 1);
  EXPECT_TRUE(back.group_formed);
  EXPECT_EQ(back.epoch, 2u);
  EXPECT_EQ(m.group(0).state, GroupState::loading);
  EXPECT_FALSE(*m.mark_loaded(a, 1)) << "loads of the old epoch do not count";
  for (NodeId id : {a, back.node_id}) (void)m.mark_loaded(id, 2);
  EXPECT_TRUE(*m.mark_loaded(c, 2));
}

TEST(Membership, AGroupKeepsWhyItLastLostAMemberInItsStatus) {
  Membership m(1, 2);
  NodeId a = join(m).node_id;
  join(m);
  EXPECT_EQ(m.group(0).last_error, "");
  ASSERT_TRUE(m.mark_lost(a, t0, "stage failed to load: no config.json in /models/x").ok());
  EXPECT_EQ(m.group(0).last_error, "node 1 lost (stage failed to load: no config.json in /models/x)");
  const nlohmann::json status = nlohmann::json::parse(membership_to_json(m, 7));
  EXPECT_EQ(status["groups"][0]["last_error"], "node 1 lost (stage failed to load: no config.json in /models/x)");
}

TEST(Membership, AWaitingSpareTakesAFreedSlotAtOnce) {
  Membership m(1, 2);
  NodeId a = join(m).node_id, b = join(m).node_id;
  JoinResult spare = join(m);
  ASSERT_EQ(spare.group_id, -1);
  auto loss = m.mark_lost(a, t0);
  ASSERT_TRUE(loss.ok());
  EXPECT_EQ(loss->spare, spare.node_id);
  EXPECT_TRUE(loss->group_formed);
  EXPECT_EQ(loss->to_stop, (std::vector<NodeId>{b}));
  EXPECT_EQ(loss->old_epoch, 1u);
  EXPECT_EQ(m.group(0).epoch, 2u);
  EXPECT_EQ(m.group(0).state, GroupState::loading);
  EXPECT_EQ(m.group(0).members, (std::vector<NodeId>{spare.node_id, b}));
  EXPECT_EQ(m.node(spare.node_id)->stage_index, 0);
  EXPECT_EQ(m.group(0).num_restarts, 1);
}

TEST(Membership, LosingAMemberOfAFormingGroupIsNoRestart) {
  Membership m(1, 3);
  NodeId a = join(m).node_id;
  auto loss = m.mark_lost(a, t0);
  ASSERT_TRUE(loss.ok());
  EXPECT_EQ(loss->new_state, GroupState::forming);
  EXPECT_EQ(m.group(0).num_restarts, 0);
  EXPECT_EQ(m.group(0).epoch, 0u);
}

TEST(Membership, TooManyRestartsInTheWindowFailTheGroup) {
  Membership m(2, 1, RestartIntensity{2, milliseconds(1000)});
  join(m);
  join(m);
  Clock::time_point now = t0;
  // Restarts 1 and 2 within the window are allowed; the third fails group 0.
  for (int restart = 1; restart <= 3; ++restart) {
    NodeId member = m.group(0).members[0];
    now += milliseconds(100);
    auto loss = m.mark_lost(member, now);
    ASSERT_TRUE(loss.ok());
    EXPECT_EQ(loss->new_state, restart <= 2 ? GroupState::restarting : GroupState::failed) << restart;
    if (restart <= 2) {
      EXPECT_EQ(join(m, now).group_id, 0);
    }
  }
  EXPECT_EQ(m.group(0).state, GroupState::failed);
  EXPECT_EQ(join(m, now).group_id, -1) << "a failed group takes no nodes; group 1 is full";
}

TEST(Membership, RestartsOutsideTheWindowAreForgotten) {
  Membership m(1, 1, RestartIntensity{1, milliseconds(1000)});
  join(m);
  Clock::time_point now = t0;
  for (int restart = 0; restart < 5; ++restart) {
    now += milliseconds(1500);  // each restart falls out of the previous one's window
    auto loss = m.mark_lost(m.group(0).members[0], now);
    ASSERT_TRUE(loss.ok());
    EXPECT_EQ(loss->new_state, GroupState::restarting);
    join(m, now);
  }
  EXPECT_EQ(m.group(0).num_restarts, 5);
  EXPECT_EQ(m.group(0).epoch, 6u);
}

TEST(Membership, HeartbeatsAndExpiry) {
  Membership m(1, 2);
  NodeId a = join(m, t0).node_id, b = join(m, t0).node_id;
  ASSERT_TRUE(m.heartbeat(a, t0 + milliseconds(900)).ok());
  EXPECT_EQ(m.expired(t0 + milliseconds(1000), milliseconds(500)), (std::vector<NodeId>{b}));
  EXPECT_TRUE(m.expired(t0 + milliseconds(400), milliseconds(500)).empty());
  EXPECT_FALSE(m.heartbeat(42, t0).ok());
  (void)m.mark_lost(b, t0 + milliseconds(1000));
  EXPECT_TRUE(m.expired(t0 + milliseconds(1000), milliseconds(500)).empty()) << "lost nodes never expire again";
}

TEST(Membership, StatusJsonListsNodesAndGroups) {
  Membership m(1, 2);
  join(m);
  auto status = nlohmann::json::parse(membership_to_json(m, 77));
  EXPECT_EQ(status["head_epoch"], 77);
  EXPECT_EQ(status["num_active_nodes"], 1);
  ASSERT_EQ(status["nodes"].size(), 1u);
  EXPECT_EQ(status["nodes"][0]["state"], "active");
  EXPECT_EQ(status["groups"][0]["state"], "forming");
  EXPECT_EQ(status["groups"][0]["members"], (std::vector<NodeId>{1, 0}));
}

}  // namespace
}  // namespace troupe::cluster
