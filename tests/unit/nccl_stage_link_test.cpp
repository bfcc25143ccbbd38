// The NCCL stage hand-off's logic without NCCL (runtime/nccl_stage_link.hpp): the unique id's
// trip, epoch keying, timeouts, and ncclCommAbort on a peer's loss, over a fake NcclLinkOps whose
// two ends move bytes through a shared mailbox (tests/unit/fake_nccl_link_ops.hpp). The real ops (backends/cuda/cuda_nccl_link_ops)
// are compiled but not run here: NCCL refuses two ranks on one GPU and CI has none.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <map>
#include <thread>

#include "runtime/config.hpp"
#include "runtime/nccl_stage_link.hpp"
#include "tests/unit/fake_nccl_link_ops.hpp"

namespace troupe {
namespace {

// A clock that moves 10 ms on every pause: timeouts without waiting.
NcclStageLink::Timing fake_time() {
  auto now = std::make_shared<NcclStageLink::Clock::time_point>();
  NcclStageLink::Timing t;
  t.now = [now] { return *now; };
  t.pause = [now] { *now += std::chrono::milliseconds(10); };
  return t;
}

struct Ends {
  std::shared_ptr<FakeWire> wire = std::make_shared<FakeWire>();
  std::shared_ptr<FakeCounters> c0 = std::make_shared<FakeCounters>(), c1 = std::make_shared<FakeCounters>();
  FakeOps* ops0 = nullptr;
  FakeOps* ops1 = nullptr;
  std::unique_ptr<NcclStageLink> link0, link1;
  explicit Ends(NcclStageLink::Timing timing = fake_time()) {
    auto a = std::make_unique<FakeOps>(wire, c0);
    auto b = std::make_unique<FakeOps>(wire, c1);
    ops0 = a.get();
    ops1 = b.get();
    link0 = std::make_unique<NcclStageLink>(std::move(a), timing);
    link1 = std::make_unique<NcclStageLink>(std::move(b), timing);
  }
};

constexpr auto kSecond = std::chrono::milliseconds(1000);

TEST(NcclStageLink, TheFirstStagesIdJoinsBothEndsAndTensorsPass) {
  Ends ends;
  auto id = ends.link0->create_id();  // stage 0 in prepare; travels stage_prepared -> head -> wire_group
  ASSERT_TRUE(id.ok());
  ASSERT_EQ(id->size(), NcclLinkOps::kUniqueIdBytes);
  const StageLinkKey key{3, 7};
  ASSERT_TRUE(ends.link0->connect(key, id.value(), 2, 0, kSecond).ok());
  ASSERT_TRUE(ends.link1->connect(key, id.value(), 2, 1, kSecond).ok());
  EXPECT_EQ(ends.c1->last_id, id.value());
  EXPECT_EQ(ends.link1->state(), NcclStageLink::State::ready);
  Tensor hidden = Tensor::from_f32({1.5f, -2.0f, 3.25f, 0.0f}, {2, 2});
  Tensor got = Tensor::zeros(DType::f32, {2, 2});
  ASSERT_TRUE(ends.link0->send(hidden, 1, kSecond).ok());
  ASSERT_TRUE(ends.link1->recv(got, 0, kSecond).ok());
  EXPECT_EQ(std::memcmp(got.raw(), hidden.raw(), hidden.nbytes()), 0);
  EXPECT_EQ(ends.c0->aborts.load() + ends.c1->aborts.load(), 0);
}

TEST(NcclStageLink, BadIdsOtherGroupsAndStaleEpochsAreRefused) {
  Ends ends;
  auto id = ends.link0->create_id();
  ASSERT_TRUE(id.ok());
  std::vector<uint8_t> short_id(id->begin(), id->end() - 1);
  EXPECT_EQ(ends.link1->connect({1, 2}, short_id, 2, 1, kSecond).error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(ends.link1->connect({1, 2}, id.value(), 2, 2, kSecond).error().code, ErrorCode::invalid_argument);
  ASSERT_TRUE(ends.link1->connect({1, 2}, id.value(), 2, 1, kSecond).ok());
  EXPECT_EQ(ends.link1->connect({1, 1}, id.value(), 2, 1, kSecond).error().code, ErrorCode::invalid_argument)
      << "a wire_group of an older epoch";
  EXPECT_EQ(ends.link1->connect({1, 2}, id.value(), 2, 1, kSecond).error().code, ErrorCode::invalid_argument)
      << "an epoch's communicator is made once";
  EXPECT_EQ(ends.link1->connect({9, 3}, id.value(), 2, 1, kSecond).error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(ends.link1->state(), NcclStageLink::State::ready) << "refusals leave the live communicator alone";
  EXPECT_EQ(ends.c1->aborts.load(), 0);
}

TEST(NcclStageLink, ANewEpochAbortsTheOldCommunicatorFirst) {
  Ends ends;
  auto id = ends.link0->create_id();
  ASSERT_TRUE(ends.link1->connect({1, 1}, id.value(), 2, 1, kSecond).ok());
  ASSERT_TRUE(ends.link1->connect({1, 2}, id.value(), 2, 1, kSecond).ok());
  EXPECT_EQ(ends.c1->aborts.load(), 1);
  EXPECT_EQ(ends.c1->inits.load(), 2);
  EXPECT_EQ(ends.link1->key().epoch, 2u);
  EXPECT_EQ(ends.link1->state(), NcclStageLink::State::ready);
}

TEST(NcclStageLink, AnInitThatNeverCompletesTimesOutAndAborts) {
  Ends ends;
  ends.ops1->init_polls = -1;  // the other ranks never join
  auto id = ends.link0->create_id();
  Status status = ends.link1->connect({1, 1}, id.value(), 2, 1, std::chrono::milliseconds(100));
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, ErrorCode::timeout);
  EXPECT_EQ(ends.link1->state(), NcclStageLink::State::aborted);
  EXPECT_EQ(ends.c1->aborts.load(), 1);
  Tensor t = Tensor::zeros(DType::f32, {1});
  EXPECT_EQ(ends.link1->send(t, 0, kSecond).error().code, ErrorCode::unavailable);
  ends.ops1->init_polls = 0;  // the group restarts: a new epoch connects
  EXPECT_TRUE(ends.link1->connect({1, 2}, id.value(), 2, 1, kSecond).ok());
  EXPECT_EQ(ends.c1->aborts.load(), 1) << "an aborted communicator is not aborted twice";
}

TEST(NcclStageLink, ARecvWithoutASenderTimesOutAndLaterCallsFail) {
  Ends ends;
  auto id = ends.link0->create_id();
  ASSERT_TRUE(ends.link1->connect({1, 1}, id.value(), 2, 1, kSecond).ok());
  Tensor t = Tensor::zeros(DType::f32, {4});
  EXPECT_EQ(ends.link1->recv(t, 0, std::chrono::milliseconds(50)).error().code, ErrorCode::timeout);
  EXPECT_EQ(ends.c1->aborts.load(), 1);
  EXPECT_EQ(ends.link1->recv(t, 0, kSecond).error().code, ErrorCode::unavailable);
}

TEST(NcclStageLink, AnNcclErrorAborts) {
  Ends ends;
  auto id = ends.link0->create_id();
  ASSERT_TRUE(ends.link0->connect({1, 1}, id.value(), 2, 0, kSecond).ok());
  ends.ops0->transfers_fail = true;
  Tensor t = Tensor::zeros(DType::f32, {4});
  Status status = ends.link0->send(t, 1, kSecond);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, ErrorCode::unavailable);
  EXPECT_NE(status.error().message.find("ncclRemoteError"), std::string::npos) << status.error().message;
  EXPECT_EQ(ends.c0->aborts.load(), 1);
}

TEST(NcclStageLink, APeerLostWakesARecvAndAbortsOnceFromThePollingThread) {
  Ends ends{NcclStageLink::Timing{}};  // the real clock: the recv really waits
  auto id = ends.link0->create_id();
  const StageLinkKey key{4, 9};
  ASSERT_TRUE(ends.link1->connect(key, id.value(), 2, 1, kSecond).ok());
  Tensor t = Tensor::zeros(DType::f32, {4});
  Status received = Status::success();
  const auto start = std::chrono::steady_clock::now();
  std::thread stage([&] { received = ends.link1->recv(t, 0, std::chrono::milliseconds(20000)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ends.link1->on_peer_lost({4, 8}, "stale loss");  // an old epoch's member: nothing happens
  ends.link1->on_peer_lost({5, 9}, "other group");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(ends.c1->aborts.load(), 0);
  ends.link1->on_peer_lost(key, "worker 2 killed");  // the head's stop_group of this epoch
  stage.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5)) << "not the 20 s timeout";
  ASSERT_FALSE(received.ok());
  EXPECT_EQ(received.error().code, ErrorCode::unavailable);
  EXPECT_NE(received.error().message.find("worker 2 killed"), std::string::npos) << received.error().message;
  EXPECT_EQ(ends.c1->aborts.load(), 1);
  EXPECT_FALSE(ends.c1->abort_during_poll.load()) << "ncclCommAbort while a poll used the communicator";
  ends.link1->abort("again");
  EXPECT_EQ(ends.c1->aborts.load(), 1);
}

TEST(NcclStageLink, DestroyingALiveLinkAbortsItsCommunicator) {
  Ends ends;
  auto id = ends.link0->create_id();
  ASSERT_TRUE(ends.link0->connect({1, 1}, id.value(), 2, 0, kSecond).ok());
  ends.link0.reset();
  EXPECT_EQ(ends.c0->aborts.load(), 1);
  ends.link1.reset();  // never connected: nothing to abort
  EXPECT_EQ(ends.c1->aborts.load(), 0);
}

TEST(NcclStageLink, TheTransportIsSelectedByAFlagDefaultingToHost) {
  Config config;
  EXPECT_EQ(config.stage_transport, "host");
  EXPECT_TRUE(config.validate().ok());
  config.stage_transport = "nccl";
  config.device = "cuda";
  EXPECT_TRUE(config.validate().ok());
  config.device = "cpu";
  EXPECT_FALSE(config.validate().ok()) << "NCCL needs GPUs";
  config.stage_transport = "ucx";
  config.device = "auto";
  auto refused = config.validate();
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("stage-transport"), std::string::npos) << refused.error().message;
}

}  // namespace
}  // namespace troupe
