// The NCCL stage transport (pipeline/nccl_stage_transport.hpp) over fake link ends: a step's
// metadata and hidden states and the logits cross whole, in three transfers; a frame out of step
// or a failed transfer aborts the communicator; abort() wakes a receive; the backend is
// synchronized before a tensor leaves.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "pipeline/nccl_stage_transport.hpp"
#include "pipeline/step_codec.hpp"
#include "tests/unit/fake_gpu_stage_backend.hpp"
#include "tests/unit/fake_nccl_link_ops.hpp"

namespace troupe::cluster {
namespace {

using namespace std::chrono_literals;

// Two stages' ends of one link, connected through the fake network by the sender's id.
struct Link {
  std::shared_ptr<FakeGpuCluster> gpus = std::make_shared<FakeGpuCluster>();
  FakeGpuStageBackend sender_backend{gpus, "host/gpu0"};
  FakeGpuStageBackend receiver_backend{gpus, "host/gpu1"};
  std::shared_ptr<NcclStageLink> sender_link, receiver_link;
  std::unique_ptr<NcclStageTransport> sender, receiver;
  std::atomic<bool> stop{false};

  Link() {
    auto a = sender_backend.make_stage_link_ops();
    auto b = receiver_backend.make_stage_link_ops();
    sender_link = std::make_shared<NcclStageLink>(std::move(a.value()));
    receiver_link = std::make_shared<NcclStageLink>(std::move(b.value()));
    auto id = sender_link->create_id();
    EXPECT_TRUE(id.ok());
    const StageLinkKey key{2, 5};
    auto joined = std::async(std::launch::async, [&] {
      return receiver_link->connect(key, id.value(), 2, NcclStageTransport::kReceiverRank, 5s);
    });
    EXPECT_TRUE(sender_link->connect(key, id.value(), 2, NcclStageTransport::kSenderRank, 5s).ok());
    EXPECT_TRUE(joined.get().ok());
    sender = std::make_unique<NcclStageTransport>(sender_link, NcclStageTransport::Role::sender, "stage 1 over NCCL");
    receiver =
        std::make_unique<NcclStageTransport>(receiver_link, NcclStageTransport::Role::receiver, "stage 0 over NCCL");
  }
  FakeCounters& sender_counters() { return *gpus->counters[0]; }
  FakeCounters& receiver_counters() { return *gpus->counters[1]; }
};

ForwardBatch two_sequences(std::vector<std::vector<int32_t>>& tables) {
  tables = {{3, 9}, {4}};
  ForwardBatch batch;
  batch.positions = {0, 1, 2, 7};
  batch.token_ids = {11, 12, 13, 14};
  batch.seqs.push_back(SequenceSlice{3, 3, &tables[0], true, 2});
  batch.seqs.push_back(SequenceSlice{1, 8, &tables[1], false, 0});
  return batch;
}

TEST(NcclStageTransport, AStepsMetadataAndHiddenStatesCrossWhole) {
  Link link;
  std::vector<std::vector<int32_t>> tables;
  ForwardBatch batch = two_sequences(tables);
  std::vector<float> values(4 * 3);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(i) * 0.25f - 1.0f;
  Tensor hidden = Tensor::from_f32(values, {4, 3});
  const int before = link.gpus->num_synchronizes.load();
  ASSERT_TRUE(link.sender->send_step(1, batch, LogitsMode::all_tokens, hidden, link.sender_backend, 1s).ok());
  EXPECT_EQ(link.gpus->num_synchronizes.load(), before + 1) << "the stage's work is waited for before it is sent";
  EXPECT_EQ(link.sender_counters().sends.load(), 3) << "header, metadata, hidden states";
  auto step = link.receiver->receive_step(1, 1s, link.stop);
  ASSERT_TRUE(step.ok()) << step.error().message;
  EXPECT_EQ(step->step_id, 1u);
  EXPECT_EQ(step->mode, LogitsMode::all_tokens);
  EXPECT_EQ(step->batch.positions, batch.positions);
  ASSERT_EQ(step->batch.seqs.size(), 2u);
  EXPECT_EQ(*step->batch.seqs[0].block_table, tables[0]);
  EXPECT_EQ(*step->batch.seqs[1].block_table, tables[1]);
  EXPECT_EQ(step->batch.seqs[0].num_prompt_logits, 2);
  EXPECT_FALSE(step->batch.seqs[1].needs_logits);
  EXPECT_EQ(step->batch.seqs[1].context_len, 8);
  ASSERT_EQ(step->batch.hidden_states.shape(), (std::vector<int64_t>{4, 3}));
  EXPECT_EQ(step->batch.hidden_states.to_f32_vector(), values);

  // The logits back: f32 [rows, vocab] into host memory.
  Tensor logits = Tensor::from_f32({0.5f, -7.0f, 3.0f, 1e-3f, 2.0f, 9.0f}, {2, 3});
  Link back;
  ASSERT_TRUE(back.sender->send_logits(1, logits, back.sender_backend, 1s).ok());
  auto got = back.receiver->receive_logits(1, 1s, back.stop);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(got->device(), Device::cpu);
  EXPECT_EQ(got->shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(got->to_f32_vector(), logits.to_f32_vector());
}

TEST(NcclStageTransport, StepsKeepTheirOrderAndTheBufferGrowsWithThem) {
  Link link;
  std::vector<std::vector<int32_t>> tables;
  ForwardBatch batch = two_sequences(tables);
  for (uint64_t step_id = 1; step_id <= 3; ++step_id) {
    ForwardBatch b = batch;
    const int64_t rows = 4;
    const int64_t width = int64_t(step_id) * 8;  // a larger message each time
    std::vector<float> values(size_t(rows * width), float(step_id));
    ASSERT_TRUE(link.sender->send_step(step_id, b, LogitsMode::last_token, Tensor::from_f32(values, {rows, width}),
                                       link.sender_backend, 1s)
                    .ok());
    auto step = link.receiver->receive_step(step_id, 1s, link.stop);
    ASSERT_TRUE(step.ok()) << step.error().message;
    EXPECT_EQ(step->batch.hidden_states.to_f32_vector(), values) << "step " << step_id;
  }
}

TEST(NcclStageTransport, AStepOutOfOrderAbortsTheLink) {
  Link link;
  std::vector<std::vector<int32_t>> tables;
  ForwardBatch batch = two_sequences(tables);
  ASSERT_TRUE(link.sender->send_step(2, batch, LogitsMode::last_token, Tensor::zeros(DType::f32, {4, 2}),
                                     link.sender_backend, 1s)
                  .ok());
  auto step = link.receiver->receive_step(1, 1s, link.stop);
  ASSERT_FALSE(step.ok());
  EXPECT_NE(step.error().message.find("step 2 arrived while waiting for step 1"), std::string::npos)
      << step.error().message;
  EXPECT_EQ(link.receiver_link->state(), NcclStageLink::State::aborted);
  EXPECT_EQ(link.receiver_counters().aborts.load(), 1) << "ncclCommAbort, once";
  EXPECT_EQ(link.receiver->receive_step(2, 1s, link.stop).error().code, ErrorCode::unavailable);
}

TEST(NcclStageTransport, AFailedTransferAbortsAndTellsNccl) {
  Link link;
  link.gpus->ops[0]->transfers_fail = true;
  std::vector<std::vector<int32_t>> tables;
  ForwardBatch batch = two_sequences(tables);
  Status sent = link.sender->send_step(1, batch, LogitsMode::last_token, Tensor::zeros(DType::f32, {4, 2}),
                                       link.sender_backend, 1s);
  ASSERT_FALSE(sent.ok());
  EXPECT_EQ(sent.error().code, ErrorCode::unavailable);
  EXPECT_NE(sent.error().message.find("ncclRemoteError"), std::string::npos) << sent.error().message;
  EXPECT_EQ(link.sender_counters().aborts.load(), 1);
  EXPECT_EQ(link.sender_link->state(), NcclStageLink::State::aborted);
}

TEST(NcclStageTransport, AbortWakesAReceiveThatWouldWaitForADay) {
  Link link;
  std::promise<Status> received;
  std::thread stage([&] {
    auto step = link.receiver->receive_step(1, std::chrono::hours(24), link.stop);
    received.set_value(step.ok() ? Status::success() : Status(step.error()));
  });
  std::this_thread::sleep_for(50ms);
  const auto start = std::chrono::steady_clock::now();
  link.receiver->abort("the stage is stopping");
  auto future = received.get_future();
  ASSERT_EQ(future.wait_for(5s), std::future_status::ready) << "a receive inside NCCL did not wake";
  stage.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  Status status = future.get();
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.error().message.find("the stage is stopping"), std::string::npos) << status.error().message;
  EXPECT_EQ(link.receiver_counters().aborts.load(), 1);
  EXPECT_FALSE(link.receiver_counters().abort_during_poll.load());
}

TEST(NcclStageTransport, AnEndSendsOrReceivesNeverBoth) {
  Link link;
  std::vector<std::vector<int32_t>> tables;
  ForwardBatch batch = two_sequences(tables);
  EXPECT_EQ(link.receiver->send_step(1, batch, LogitsMode::last_token, Tensor::zeros(DType::f32, {4, 2}),
                                     link.receiver_backend, 1s)
                .error()
                .code,
            ErrorCode::internal);
  EXPECT_EQ(link.sender->receive_logits(1, 1s, link.stop).error().code, ErrorCode::internal);
}

}  // namespace
}  // namespace troupe::cluster
