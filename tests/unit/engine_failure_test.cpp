// The engine's error boundary on the CPU: a FaultInjectingBackend makes the N-th op (or device
// allocation) fail mid-serving; every live request ends with FinishReason::error naming the op,
// the engine is failed for good (not ready, submits refused), its loop thread ends, nothing
// throws. Also the one request check (validate_generation_request) and its messages.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>

#include "backends/build_engine.hpp"
#include "backends/cpu_backend.hpp"
#include "backends/fault_injecting_backend.hpp"
#include "engine/llm_engine.hpp"

namespace troupe {
namespace {

using backends::FaultInjectingBackend;
using backends::FaultSpec;

const std::string kModel = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";

struct Outcomes {
  std::mutex mutex;
  std::condition_variable cv;
  std::map<std::string, GenerationOutput> last;

  OutputCallback callback(const std::string& id) {
    return [this, id](const GenerationOutput& out) {
      std::lock_guard lock(mutex);
      if (out.finish_reason == FinishReason::none) return;
      last[id] = out;
      cv.notify_all();
    };
  }
  bool wait(size_t n) {
    std::unique_lock lock(mutex);
    return cv.wait_for(lock, std::chrono::seconds(60), [&] { return last.size() >= n; });
  }
};

struct FaultyEngine {
  FaultInjectingBackend* device = nullptr;  // owned by the engine
  std::unique_ptr<LlmEngine> engine;
  std::mutex mutex;
  std::vector<std::string> failures;  // on_failure calls
};

void build(FaultyEngine& f, bool overlap = false) {
  Config config;
  config.async_scheduling = overlap;
  config.model = kModel;
  config.num_threads = 2;
  config.num_kv_blocks = 64;
  config.block_size = 4;
  auto backend = std::make_unique<FaultInjectingBackend>(std::make_unique<CpuBackend>(2));
  f.device = backend.get();
  auto engine = backends::build_engine(config, std::move(backend));
  ASSERT_TRUE(engine.ok()) << engine.error().message;
  f.engine = std::move(engine.value());
  f.engine->set_on_failure([&f](const std::string& why) {
    std::lock_guard lock(f.mutex);
    f.failures.push_back(why);
  });
  f.engine->start();
}

GenerationRequest request(const std::string& id, int64_t max_tokens = 8) {
  GenerationRequest r;
  r.request_id = id;
  r.prompt_ids = {10, 11, 12, 13};
  r.params.temperature = 0.0;
  r.params.max_tokens = max_tokens;
  r.params.ignore_eos = true;
  return r;
}

TEST(FaultSpec, ParsesOpAndAllocAndRefusesTheRest) {
  EXPECT_EQ(backends::parse_fault_spec("")->kind, FaultSpec::Kind::none);
  auto op = backends::parse_fault_spec("op:7");
  ASSERT_TRUE(op.ok());
  EXPECT_EQ(op->kind, FaultSpec::Kind::op);
  EXPECT_EQ(op->n, 7);
  EXPECT_EQ(backends::parse_fault_spec("alloc:1")->kind, FaultSpec::Kind::alloc);
  for (const char* bad : {"op", "op:", "op:0", "op:x", "disk:3", "alloc:-1", "op:3x"}) {
    auto parsed = backends::parse_fault_spec(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.error().message.find("TROUPE_INJECT_FAULT"), std::string::npos);
  }
}

TEST(EngineFailure, AnOpFaultFailsEveryLiveRequestAndTheEngine) {
  FaultyEngine f;
  build(f);
  ASSERT_TRUE(f.engine->is_ready());
  EXPECT_TRUE(f.engine->failure().empty());
  Outcomes outcomes;
  // A healthy request first: the injector passes everything through until armed.
  ASSERT_TRUE(f.engine->submit(request("healthy", 3), outcomes.callback("healthy")).ok());
  ASSERT_TRUE(outcomes.wait(1));
  EXPECT_EQ(outcomes.last["healthy"].finish_reason, FinishReason::length);

  // Three long requests in, then the fault a few steps later (arming first could fail the engine
  // before the last submit).
  for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(f.engine->submit(request(id, 64), outcomes.callback(id)).ok());
  f.device->arm({FaultSpec::Kind::op, 40});
  ASSERT_TRUE(outcomes.wait(4));
  for (const char* id : {"a", "b", "c"}) {
    const GenerationOutput& out = outcomes.last[id];
    EXPECT_EQ(out.finish_reason, FinishReason::error) << id;
    EXPECT_NE(out.error_message.find("the engine failed"), std::string::npos) << out.error_message;
    EXPECT_NE(out.error_message.find("injected device fault (op 40)"), std::string::npos) << out.error_message;
  }
  const std::string failure = f.engine->failure();
  EXPECT_NE(failure.find(" failed: injected device fault"), std::string::npos) << failure;
  EXPECT_FALSE(f.engine->is_ready());
  EXPECT_EQ(f.engine->stats().failure, failure);

  auto refused = f.engine->submit(request("late"), outcomes.callback("late"));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::unavailable);
  EXPECT_NE(refused.error().message.find("the engine failed"), std::string::npos);
  f.engine->stop();  // the loop thread ended on its own: stop joins at once
  std::lock_guard lock(f.mutex);
  ASSERT_EQ(f.failures.size(), 1u);
  EXPECT_EQ(f.failures[0], failure);
}

TEST(EngineFailure, AFailedDeviceAllocationIsCaughtOnTheEngineThread) {
  FaultyEngine f;
  build(f);
  Outcomes outcomes;
  f.device->arm({FaultSpec::Kind::alloc, 5});  // throws std::bad_alloc inside a forward
  ASSERT_TRUE(f.engine->submit(request("a", 16), outcomes.callback("a")).ok());
  ASSERT_TRUE(outcomes.wait(1));
  EXPECT_EQ(outcomes.last["a"].finish_reason, FinishReason::error);
  EXPECT_NE(outcomes.last["a"].error_message.find("injected out of memory"), std::string::npos)
      << outcomes.last["a"].error_message;
  EXPECT_NE(f.engine->failure().find("device allocation failed"), std::string::npos) << f.engine->failure();
  EXPECT_FALSE(f.engine->submit(request("b"), outcomes.callback("b")).ok());
  f.engine->stop();
}

// Overlapped scheduling: the fault comes on the StepWorker, with the next step already queued;
// every request ends with the fault's message, the engine fails once, nothing hangs.
TEST(EngineFailure, FaultsOnTheStepWorkerFailTheEngineToo) {
  {
    FaultyEngine f;
    build(f, true);
    ASSERT_TRUE(f.engine->is_overlapping());
    Outcomes outcomes;
    for (const char* id : {"a", "b", "c"}) ASSERT_TRUE(f.engine->submit(request(id, 64), outcomes.callback(id)).ok());
    f.device->arm({FaultSpec::Kind::op, 40});
    ASSERT_TRUE(outcomes.wait(3));
    for (const char* id : {"a", "b", "c"}) {
      EXPECT_EQ(outcomes.last[id].finish_reason, FinishReason::error) << id;
      EXPECT_NE(outcomes.last[id].error_message.find("injected device fault (op 40)"), std::string::npos)
          << outcomes.last[id].error_message;
    }
    EXPECT_NE(f.engine->failure().find(" failed: injected device fault"), std::string::npos) << f.engine->failure();
    EXPECT_FALSE(f.engine->is_ready());
    f.engine->stop();
    std::lock_guard lock(f.mutex);
    EXPECT_EQ(f.failures.size(), 1u);
  }
  FaultyEngine f;
  build(f, true);
  Outcomes outcomes;
  f.device->arm({FaultSpec::Kind::alloc, 5});  // std::bad_alloc on the worker, rethrown on the loop thread
  ASSERT_TRUE(f.engine->submit(request("a", 16), outcomes.callback("a")).ok());
  ASSERT_TRUE(outcomes.wait(1));
  EXPECT_EQ(outcomes.last["a"].finish_reason, FinishReason::error);
  EXPECT_NE(f.engine->failure().find("device allocation failed"), std::string::npos) << f.engine->failure();
  f.engine->stop();
}

TEST(RequestCheck, OneFunctionOneSetOfMessagesNamingTheField) {
  const RequestLimits limits{100, 16};
  auto check = [&](GenerationRequest r) { return validate_generation_request(r, limits); };
  GenerationRequest ok = request("ok", 4);
  EXPECT_TRUE(check(ok).ok());

  GenerationRequest empty = ok;
  empty.prompt_ids.clear();
  ASSERT_FALSE(check(empty).ok());
  EXPECT_EQ(check(empty).error().param, "prompt");
  EXPECT_EQ(check(empty).error().message, "the prompt is empty");

  GenerationRequest outside = ok;
  outside.prompt_ids[1] = 100;
  EXPECT_EQ(check(outside).error().message, "prompt token id 100 is outside the vocabulary [0, 100)");

  GenerationRequest too_long = ok;
  too_long.prompt_ids.assign(16, 1);
  EXPECT_EQ(check(too_long).error().param, "prompt");
  EXPECT_NE(check(too_long).error().message.find("maximum context length is 16 tokens"), std::string::npos);

  GenerationRequest bad_param = ok;
  bad_param.params.top_p = 0.0;
  EXPECT_EQ(check(bad_param).error().param, "top_p");

  GenerationRequest past_context = ok;
  past_context.params.max_tokens = 13;  // 4 + 13 > 16
  EXPECT_TRUE(check(past_context).ok());  // the engine stops at the context (length)
  past_context.max_tokens_must_fit = true;  // OpenAI's rule at the HTTP front door
  ASSERT_FALSE(check(past_context).ok());
  EXPECT_EQ(check(past_context).error().param, "max_tokens");
  EXPECT_EQ(check(past_context).error().code, ErrorCode::invalid_argument);
}

}  // namespace
}  // namespace troupe
