// The public API (include/troupe/) in one process: stage hosts and coordinator share one actor
// system but talk over loopback sockets as they would across machines.
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "troupe/api.hpp"

namespace troupe::api {
namespace {

using std::chrono::milliseconds;

Tensor map_values(const Tensor& in, float (*f)(float)) {
  Tensor out = in;
  for (float& v : out.data) v = f(v);
  return out;
}

// Registered once per process; names carry a prefix so they cannot clash with other tests.
void register_test_stages() {
  static const bool done = [] {
    EXPECT_TRUE(register_stage("t.add_one", [](const Tensor& in) -> Result<Tensor> {
                  return map_values(in, [](float v) { return v + 1.0f; });
                }).ok());
    EXPECT_TRUE(register_stage("t.triple", [](const Tensor& in) -> Result<Tensor> {
                  return map_values(in, [](float v) { return 3.0f * v; });
                }).ok());
    // [rows, cols] -> [cols, rows]
    EXPECT_TRUE(register_stage("t.transpose", [](const Tensor& in) -> Result<Tensor> {
                  if (in.shape.size() != 2) return make_error(ErrorCode::invalid_argument, "t.transpose needs 2 dims");
                  const int64_t rows = in.shape[0], cols = in.shape[1];
                  Tensor out = Tensor::zeros({cols, rows});
                  for (int64_t r = 0; r < rows; ++r)
                    for (int64_t c = 0; c < cols; ++c) out.data[c * rows + r] = in.data[r * cols + c];
                  return out;
                }).ok());
    EXPECT_TRUE(register_stage("t.throw", [](const Tensor&) -> Result<Tensor> {
                  throw std::runtime_error("boom");
                }).ok());
    EXPECT_TRUE(register_stage("t.slow", [](const Tensor& in) -> Result<Tensor> {
                  std::this_thread::sleep_for(milliseconds(static_cast<int64_t>(in.data.at(0))));
                  return in;
                }).ok());
    return true;
  }();
  (void)done;
}

std::string address(const StageHost& host) { return "127.0.0.1:" + std::to_string(host.port()); }

class ApiPipeline : public ::testing::Test {
 protected:
  void SetUp() override {
    register_test_stages();
    auto host = StageHost::start();
    ASSERT_TRUE(host.ok()) << host.error().message;
    host_.emplace(std::move(*host));
  }
  std::optional<StageHost> host_;
};

TEST(ApiRegistry, RejectsBadRegistrations) {
  register_test_stages();
  EXPECT_EQ(register_stage("", [](const Tensor& in) -> Result<Tensor> { return in; }).error().code,
            ErrorCode::invalid_argument);
  EXPECT_EQ(register_stage("t.null", StageFunction{}).error().code, ErrorCode::invalid_argument);
  const Status twice = register_stage("t.add_one", [](const Tensor& in) -> Result<Tensor> { return in; });
  ASSERT_FALSE(twice.ok());
  EXPECT_EQ(twice.error().message, "register_stage: 't.add_one' is already registered");
  const auto names = registered_stages();
  EXPECT_NE(std::find(names.begin(), names.end(), "t.transpose"), names.end());
}

TEST_F(ApiPipeline, ThreeStagesComputeInOrderOverManyRuns) {
  auto pipeline = Pipeline::create({{address(*host_), "t.add_one"}, {address(*host_), "t.triple"},
                                    {address(*host_), "t.transpose"}});
  ASSERT_TRUE(pipeline.ok()) << pipeline.error().message;
  EXPECT_EQ(pipeline->num_stages(), 3);
  for (int64_t run = 0; run < 20; ++run) {
    const int64_t rows = 1 + run % 4, cols = 1 + run % 7;
    Tensor input = Tensor::zeros({rows, cols});
    for (size_t i = 0; i < input.data.size(); ++i) input.data[i] = static_cast<float>(run) - 0.25f * i;
    auto output = pipeline->run(input, milliseconds(5000));
    ASSERT_TRUE(output.ok()) << output.error().message;
    ASSERT_EQ(output->shape, (std::vector<int64_t>{cols, rows}));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)  // exact: (x + 1) * 3 in fp32 on both sides
        EXPECT_EQ(output->data[c * rows + r], 3.0f * (input.data[r * cols + c] + 1.0f));
  }
}

TEST_F(ApiPipeline, StageErrorsNameTheStageAndThePipelineStaysUsable) {
  auto pipeline = Pipeline::create({{address(*host_), "t.add_one"}, {address(*host_), "t.transpose"}});
  ASSERT_TRUE(pipeline.ok()) << pipeline.error().message;
  auto bad = pipeline->run(Tensor({3}, {1, 2, 3}), milliseconds(5000));  // 1-D: transpose refuses
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(bad.error().message, "stage 1 't.transpose' on " + address(*host_) + ": t.transpose needs 2 dims");
  auto good = pipeline->run(Tensor({1, 2}, {1, 2}), milliseconds(5000));
  ASSERT_TRUE(good.ok()) << good.error().message;
  EXPECT_EQ(good->data, (std::vector<float>{2, 3}));
  EXPECT_TRUE(pipeline->broken_reason().empty());
  // A malformed input never leaves this process.
  auto malformed = pipeline->run(Tensor({2, 2}, {1, 2, 3}), milliseconds(5000));
  ASSERT_FALSE(malformed.ok());
  EXPECT_EQ(malformed.error().message, "pipeline input: tensor data holds 3 values but its shape needs 4");
}

TEST_F(ApiPipeline, ThrowingStageBecomesAnInternalError) {
  auto pipeline = Pipeline::create({{address(*host_), "t.throw"}});
  ASSERT_TRUE(pipeline.ok()) << pipeline.error().message;
  auto output = pipeline->run(Tensor({1}, {1}), milliseconds(5000));
  ASSERT_FALSE(output.ok());
  EXPECT_EQ(output.error().code, ErrorCode::internal);
  EXPECT_EQ(output.error().message, "stage 0 't.throw' on " + address(*host_) + " threw: boom");
}

TEST_F(ApiPipeline, TimedOutRunLeavesLaterRunsTheirOwnResults) {
  auto pipeline = Pipeline::create({{address(*host_), "t.slow"}});
  ASSERT_TRUE(pipeline.ok()) << pipeline.error().message;
  const auto started = std::chrono::steady_clock::now();
  auto late = pipeline->run(Tensor({2}, {400, 1}), milliseconds(100));  // the stage sleeps 400 ms
  const auto waited = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, ErrorCode::timeout) << late.error().message;
  EXPECT_LT(waited, milliseconds(300));
  auto next = pipeline->run(Tensor({2}, {1, 2}), milliseconds(5000));
  ASSERT_TRUE(next.ok()) << next.error().message;
  EXPECT_EQ(next->data, (std::vector<float>{1, 2}));  // not the late result of the first run
}

TEST_F(ApiPipeline, StoppedHostBreaksThePipelineWithinTheTimeout) {
  auto other = StageHost::start();
  ASSERT_TRUE(other.ok()) << other.error().message;
  const std::string lost = address(*other);
  auto pipeline = Pipeline::create({{address(*host_), "t.add_one"}, {lost, "t.triple"}});
  ASSERT_TRUE(pipeline.ok()) << pipeline.error().message;
  ASSERT_TRUE(pipeline->run(Tensor({1}, {1}), milliseconds(5000)).ok());
  { StageHost gone = std::move(*other); }  // stops its stages and closes its port
  const auto started = std::chrono::steady_clock::now();
  auto output = pipeline->run(Tensor({1}, {1}), milliseconds(3000));
  EXPECT_LT(std::chrono::steady_clock::now() - started, milliseconds(3000));
  ASSERT_FALSE(output.ok());
  EXPECT_EQ(output.error().code, ErrorCode::unavailable);
  EXPECT_NE(output.error().message.find("pipeline broken"), std::string::npos) << output.error().message;
  EXPECT_NE(pipeline->broken_reason().find("pipeline broken"), std::string::npos);
  auto again = pipeline->run(Tensor({1}, {1}), milliseconds(3000));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().message, pipeline->broken_reason());
}

TEST_F(ApiPipeline, SetupErrorsAreClear) {
  auto none = Pipeline::create({});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code, ErrorCode::invalid_argument);
  auto bad_address = Pipeline::create({{"no-port-here", "t.add_one"}});
  ASSERT_FALSE(bad_address.ok());
  EXPECT_EQ(bad_address.error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(bad_address.error().message.rfind("stage 0: ", 0), 0u) << bad_address.error().message;
  auto unknown = Pipeline::create({{address(*host_), "t.add_one"}, {address(*host_), "t.nope"}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.error().message.find("stage 1 't.nope' on " + address(*host_) +
                                         ": no stage function named 't.nope' is registered"),
            std::string::npos) << unknown.error().message;
}

TEST_F(ApiPipeline, ReplicasRunInputsRoundRobinInInputOrder) {
  auto second = StageHost::start();
  ASSERT_TRUE(second.ok()) << second.error().message;
  auto replicas = Replicas::create({address(*host_), address(*second), address(*host_)}, "t.triple");
  ASSERT_TRUE(replicas.ok()) << replicas.error().message;
  EXPECT_EQ(replicas->num_replicas(), 3);
  std::vector<Tensor> inputs;
  for (int k = 0; k < 8; ++k) inputs.push_back(Tensor({k + 1}, std::vector<float>(k + 1, static_cast<float>(k))));
  auto outputs = replicas->run_all(inputs, milliseconds(5000));
  ASSERT_TRUE(outputs.ok()) << outputs.error().message;
  ASSERT_EQ(outputs->size(), inputs.size());
  for (size_t k = 0; k < inputs.size(); ++k)
    EXPECT_EQ((*outputs)[k].data, std::vector<float>(k + 1, 3.0f * k)) << "input " << k;
  auto one = replicas->run(Tensor({1}, {2}), milliseconds(5000));
  ASSERT_TRUE(one.ok()) << one.error().message;
  EXPECT_EQ(one->data, (std::vector<float>{6}));
  auto empty = replicas->run_all({}, milliseconds(1000));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

}  // namespace
}  // namespace troupe::api
