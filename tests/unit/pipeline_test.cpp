// Pipeline parallel pieces without actors: the stage plan, the step wire format, the head's
// request router, and two in-process stage hosts over loopback UCX against the whole model.
#include <gtest/gtest.h>

#include <cstring>

#include <future>
#include <thread>

#include "cluster/request_router.hpp"
#include "pipeline/model_stage.hpp"
#include "pipeline/stage_plan.hpp"
#include "pipeline/step_codec.hpp"
#include "backends/cpu_backend.hpp"
#include "backends/build_engine.hpp"
#include "engine/llm_engine.hpp"
#include "models/model_loader.hpp"
#include "tests/unit/test_bytes.hpp"

namespace troupe::cluster {
namespace {

using namespace std::chrono_literals;

const std::string kTinyModel = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";

TEST(StagePlan, SplitsLayersEvenlyWithEarlierStagesTakingTheRest) {
  auto ranges = split_layers(7, 3);
  ASSERT_TRUE(ranges.ok());
  ASSERT_EQ(ranges->size(), 3u);
  EXPECT_EQ((*ranges)[0].begin, 0);
  EXPECT_EQ((*ranges)[0].end, 3);
  EXPECT_EQ((*ranges)[1].begin, 3);
  EXPECT_EQ((*ranges)[1].end, 5);
  EXPECT_EQ((*ranges)[2].begin, 5);
  EXPECT_EQ((*ranges)[2].end, 7);
  EXPECT_FALSE(split_layers(2, 3).ok());
  EXPECT_NE(split_layers(2, 3).error().message.find("exceeds the model's 2 layers"), std::string::npos);
  EXPECT_FALSE(split_layers(4, 0).ok());
}

TEST(StagePlan, SpecsCarryTheHeadsLimitsAndKeepTheWorkersOwnSettings) {
  Config head;
  head.model = "/models/x";
  head.pipeline_parallel_size = 2;
  head.block_size = 32;
  head.num_kv_blocks = 99;
  head.max_model_len = 1000;
  head.num_threads = 7;
  auto specs = plan_stages(head, 5);
  ASSERT_TRUE(specs.ok());
  ASSERT_EQ(specs->size(), 2u);
  EXPECT_TRUE((*specs)[0].is_first());
  EXPECT_TRUE((*specs)[1].is_last());
  EXPECT_EQ((*specs)[1].layer_begin, 3);
  EXPECT_EQ((*specs)[1].layer_end, 5);
  Config local;
  local.num_threads = 1;
  local.device = "cpu";
  Config stage = stage_config((*specs)[1], local);
  EXPECT_EQ(stage.model, "/models/x");
  EXPECT_EQ(stage.block_size, 32);
  EXPECT_EQ(stage.num_kv_blocks, 99);
  EXPECT_EQ(stage.max_model_len, 1000);
  EXPECT_EQ(stage.num_threads, 1);  // the worker's, not the head's
  EXPECT_EQ(stage.device, "cpu");
}


ForwardBatch sample_batch(std::vector<std::vector<int32_t>>& tables) {
  tables = {{3, 1}, {7}, {2, 5, 9}};
  ForwardBatch batch;
  const int32_t news[3] = {3, 1, 2}, contexts[3] = {20, 9, 40};
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < news[s]; ++i) {
      batch.token_ids.push_back(100 + s);
      batch.positions.push_back(contexts[s] - news[s] + i);
    }
    SequenceSlice slice;
    slice.num_new_tokens = news[s];
    slice.context_len = contexts[s];
    slice.block_table = &tables[size_t(s)];
    slice.needs_logits = s != 1;
    slice.num_prompt_logits = s == 0 ? 2 : 0;  // prompt logprobs of a prefill chunk
    batch.seqs.push_back(slice);
  }
  return batch;
}

TEST(StepCodec, RoundTripsTheBatchTablesAndHiddenStates) {
  std::vector<std::vector<int32_t>> tables;
  ForwardBatch batch = sample_batch(tables);
  std::vector<float> values(6 * 4);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(i) * 0.5f - 3.0f;
  Tensor hidden = Tensor::from_f32(values, {6, 4});
  auto bytes = encode_step(42, batch, LogitsMode::all_tokens, hidden);
  auto step = decode_step(bytes);
  ASSERT_TRUE(step.ok()) << step.error().message;
  EXPECT_EQ(step->step_id, 42u);
  EXPECT_EQ(step->mode, LogitsMode::all_tokens);
  EXPECT_EQ(step->batch.positions, batch.positions);
  ASSERT_EQ(step->batch.seqs.size(), 3u);
  for (size_t s = 0; s < 3; ++s) {
    EXPECT_EQ(step->batch.seqs[s].num_new_tokens, batch.seqs[s].num_new_tokens);
    EXPECT_EQ(step->batch.seqs[s].context_len, batch.seqs[s].context_len);
    EXPECT_EQ(step->batch.seqs[s].needs_logits, batch.seqs[s].needs_logits);
    EXPECT_EQ(step->batch.seqs[s].num_prompt_logits, batch.seqs[s].num_prompt_logits);
    EXPECT_EQ(*step->batch.seqs[s].block_table, tables[s]);
  }
  // Moving the decoded step keeps its block-table pointers valid.
  DecodedStep moved = std::move(step.value());
  EXPECT_EQ(*moved.batch.seqs[2].block_table, tables[2]);
  ASSERT_EQ(moved.batch.hidden_states.shape(), (std::vector<int64_t>{6, 4}));
  for (size_t i = 0; i < values.size(); ++i) EXPECT_EQ(moved.batch.hidden_states.data<float>()[i], values[i]);
}

TEST(StepCodec, TruncatedOrForeignBytesAreErrorsNotCrashes) {
  std::vector<std::vector<int32_t>> tables;
  ForwardBatch batch = sample_batch(tables);
  Tensor hidden = Tensor::zeros(DType::f32, {6, 4});
  const auto bytes = encode_step(1, batch, LogitsMode::last_token, hidden);
  for (size_t cut = 0; cut < bytes.size(); cut += 7) {
    std::vector<uint8_t> part(bytes.begin(), bytes.begin() + long(cut));
    auto step = decode_step(part);
    ASSERT_FALSE(step.ok()) << "cut at " << cut;
    EXPECT_EQ(step.error().code, ErrorCode::corrupt_data);
  }
  std::vector<uint8_t> foreign = bytes;
  foreign[0] ^= 0xff;
  EXPECT_FALSE(decode_step(foreign).ok());
  Tensor logits = Tensor::from_f32({1, 2, 3, 4, 5, 6}, {2, 3});
  const auto logit_bytes = encode_logits(9, logits);
  auto back = decode_logits(logit_bytes, 9);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->data<float>()[5], 6.0f);
  EXPECT_EQ(decode_logits(logit_bytes, 10).error().code, ErrorCode::internal);
}

// Counts off the wire that once wrapped a size check (num_tokens * 4) or allocated before checking
// (hidden_size: 6 x 2^40 floats), found by reading the codec for tests/fuzz; and a sequence whose
// context_len is shorter than its new tokens, which the stage would have indexed the cache with.
TEST(StepCodec, HostileCountsAreCorruptBeforeAnythingIsAllocated) {
  std::vector<std::vector<int32_t>> tables;
  ForwardBatch batch = sample_batch(tables);
  const auto bytes = encode_step(1, batch, LogitsMode::last_token, Tensor::zeros(DType::f32, {6, 4}));
  auto with = [&](size_t offset, int64_t value) {
    std::vector<uint8_t> b = bytes;
    std::memcpy(b.data() + offset, &value, sizeof(value));
    return decode_step(b);
  };
  for (auto [offset, value] : {std::pair<size_t, int64_t>{16, int64_t{1} << 62}, {24, int64_t{1} << 60},
                               {32, int64_t{1} << 40}, {32, int64_t{1} << 62}, {40, int64_t{1} << 40}}) {
    auto step = with(offset, value);
    ASSERT_FALSE(step.ok()) << "offset " << offset;
    EXPECT_EQ(step.error().code, ErrorCode::corrupt_data);
  }
  std::vector<uint8_t> short_context = bytes;
  const int32_t context_len = 0;  // sequence 0 has num_new_tokens > 0
  std::memcpy(short_context.data() + 56 + 6 * 4 + 4, &context_len, 4);
  EXPECT_FALSE(decode_step(short_context).ok());
  std::vector<uint8_t> logits = encode_logits(3, Tensor::from_f32({1, 2}, {1, 2}));
  const int64_t rows = int64_t{1} << 62;
  std::memcpy(logits.data() + 16, &rows, 8);
  EXPECT_EQ(decode_logits(logits, 3).error().code, ErrorCode::corrupt_data);
}

// Found by tests/fuzz (fuzz_step_codec, UBSan): a sequence with an empty block table was read
// with memcpy into its empty vector's null data(), undefined even for 0 bytes.
TEST(StepCodec, EmptyBlockTablesAndEmptyBatchesRoundTrip) {
  const auto crash = testing::base64_decode(
      "AFBUU1QAAAAACQAAAAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
      "AAAAAAAAAAAAAQAAAAUAAAAAAgAAAAAAAAAAAIA/AAAAQAAAQEAAAIBgAACgQAAAwEAAAOBAAAAAQQAAEEEAACAoAAAwQQ==");
  (void)decode_step(std::vector<uint8_t>(crash.begin() + 1, crash.end()));  // byte 0 picked the decoder
  std::vector<int32_t> empty;
  ForwardBatch batch;
  batch.token_ids = {5};
  batch.positions = {0};
  SequenceSlice slice;
  slice.num_new_tokens = 1;
  slice.context_len = 1;
  slice.block_table = &empty;
  batch.seqs.push_back(slice);
  auto step = decode_step(encode_step(4, batch, LogitsMode::last_token, Tensor::zeros(DType::f32, {1, 2})));
  ASSERT_TRUE(step.ok()) << step.error().message;
  EXPECT_TRUE(step->batch.seqs[0].block_table->empty());
  auto none = decode_step(encode_step(5, ForwardBatch{}, LogitsMode::last_token, Tensor::zeros(DType::f32, {0, 2})));
  ASSERT_TRUE(none.ok()) << none.error().message;
  EXPECT_EQ(none->batch.num_seqs(), 0);
}

GenerationRequest request(const std::string& id, std::vector<int32_t> prompt, int64_t max_tokens) {
  GenerationRequest r;
  r.request_id = id;
  r.prompt_ids = std::move(prompt);
  r.params.temperature = 0;
  r.params.max_tokens = max_tokens;
  return r;
}

GenerationOutput tokens(std::vector<int32_t> ids, FinishReason finish = FinishReason::none) {
  GenerationOutput out;
  out.new_token_ids = std::move(ids);
  out.finish_reason = finish;
  return out;
}

const RouterClock::time_point t0{};

TEST(RequestRouter, WaitsForAReadyGroupThenPicksTheLeastLoaded) {
  RequestRouter router;
  auto parked = router.submit(request("a", {1, 2}, 4), t0);
  EXPECT_TRUE(parked.dispatches.empty());
  EXPECT_EQ(router.num_waiting(), 1);
  auto started = router.group_ready(0, t0);
  ASSERT_EQ(started.dispatches.size(), 1u);
  EXPECT_EQ(started.dispatches[0].group_id, 0);
  EXPECT_EQ(started.dispatches[0].request.request_id, "a#1");
  router.group_ready(1, t0);
  auto second = router.submit(request("b", {3}, 4), t0);
  ASSERT_EQ(second.dispatches.size(), 1u);
  EXPECT_EQ(second.dispatches[0].group_id, 1) << "group 0 already runs one request";
}

TEST(RequestRouter, ALostGroupsRequestsResumeElsewhereFromWhatWasSent) {
  RequestRouter router;
  router.group_ready(0, t0);
  router.group_ready(1, t0);
  auto first = router.submit(request("a", {1, 2}, 5), t0);
  ASSERT_EQ(first.dispatches.size(), 1u);
  const int64_t group = first.dispatches[0].group_id;
  auto out1 = router.on_output("a#1", tokens({10, 11}), t0);
  ASSERT_EQ(out1.deliveries.size(), 1u);
  EXPECT_EQ(out1.deliveries[0].output.num_prompt_tokens, 2);
  EXPECT_EQ(out1.deliveries[0].output.num_generated_tokens, 2);

  auto moved = router.group_lost(group, "killed", t0);
  ASSERT_EQ(moved.dispatches.size(), 1u);
  const Dispatch& again = moved.dispatches[0];
  EXPECT_NE(again.group_id, group);
  EXPECT_EQ(again.request.request_id, "a#2");
  EXPECT_EQ(again.request.prompt_ids, (std::vector<int32_t>{1, 2, 10, 11}));
  EXPECT_EQ(again.request.params.max_tokens, 3);
  EXPECT_EQ(router.num_resumed_total(), 1);

  // The old attempt's late outputs are dropped: nothing is sent twice.
  EXPECT_TRUE(router.on_output("a#1", tokens({12}), t0).deliveries.empty());
  auto rest = router.on_output("a#2", tokens({12, 13, 14}, FinishReason::length), t0);
  ASSERT_EQ(rest.deliveries.size(), 1u);
  EXPECT_EQ(rest.deliveries[0].output.finish_reason, FinishReason::length);
  EXPECT_EQ(rest.deliveries[0].output.num_prompt_tokens, 2);
  EXPECT_EQ(rest.deliveries[0].output.num_generated_tokens, 5);
  EXPECT_EQ(router.num_live(), 0);
}

TEST(RequestRouter, AnEngineErrorMarksTheGroupBrokenAndMovesAllItsRequests) {
  RequestRouter router;
  router.group_ready(0, t0);
  router.submit(request("a", {1}, 4), t0);
  router.submit(request("b", {2}, 4), t0);
  router.group_ready(1, t0);
  GenerationOutput failed;
  failed.finish_reason = FinishReason::error;
  failed.error_message = "pipeline broken";
  auto actions = router.on_output("a#1", failed, t0);
  EXPECT_EQ(actions.broken_groups, (std::vector<int64_t>{0}));
  ASSERT_EQ(actions.dispatches.size(), 2u);
  for (const auto& d : actions.dispatches) EXPECT_EQ(d.group_id, 1);
  EXPECT_TRUE(actions.deliveries.empty()) << "the client sees no error";
}

TEST(RequestRouter, WaitingIsBoundedAndAttemptsAreLimited) {
  RouterOptions options;
  options.max_wait = 1000ms;
  options.max_attempts = 2;
  RequestRouter router(options);
  router.submit(request("a", {1}, 4), t0);
  EXPECT_TRUE(router.expire(t0 + 500ms).deliveries.empty());
  auto expired = router.expire(t0 + 1500ms);
  ASSERT_EQ(expired.deliveries.size(), 1u);
  EXPECT_EQ(expired.deliveries[0].output.finish_reason, FinishReason::error);
  EXPECT_NE(expired.deliveries[0].output.error_message.find("no serving group"), std::string::npos);

  router.group_ready(0, t0);
  router.submit(request("b", {1}, 4), t0);  // attempt 1
  router.group_lost(0, "x", t0);
  EXPECT_EQ(router.group_ready(0, t0).dispatches.size(), 1u);  // attempt 2
  auto last = router.group_lost(0, "y", t0);
  EXPECT_TRUE(last.dispatches.empty()) << "a third attempt is not made";
  ASSERT_EQ(last.deliveries.size(), 1u);
  EXPECT_EQ(last.deliveries[0].output.finish_reason, FinishReason::error);
  EXPECT_NE(last.deliveries[0].output.error_message.find("y"), std::string::npos);
  EXPECT_EQ(router.num_live(), 0);
}

TEST(RequestRouter, CancelAndFinishedBeforeTheLossNeedNoNewAttempt) {
  RequestRouter router;
  router.group_ready(0, t0);
  router.group_ready(1, t0);
  router.submit(request("a", {1}, 2), t0);
  auto cancelled = router.cancel("a");
  ASSERT_EQ(cancelled.cancellations.size(), 1u);
  EXPECT_EQ(cancelled.cancellations[0].engine_request_id, "a#1");
  ASSERT_EQ(cancelled.deliveries.size(), 1u);
  EXPECT_EQ(cancelled.deliveries[0].output.finish_reason, FinishReason::abort);

  auto b = router.submit(request("b", {1}, 2), t0);
  router.on_output("b#1", tokens({5, 6}), t0);  // every token sent, the finish lost with the group
  auto moved = router.group_lost(b.dispatches[0].group_id, "killed", t0);
  EXPECT_TRUE(moved.dispatches.empty());
  ASSERT_EQ(moved.deliveries.size(), 1u);
  EXPECT_EQ(moved.deliveries[0].output.finish_reason, FinishReason::length);
  EXPECT_EQ(moved.deliveries[0].output.num_generated_tokens, 2);
}

Result<std::unique_ptr<Backend>> cpu_backend(const Config& config) {
  return std::unique_ptr<Backend>(std::make_unique<CpuBackend>(config.num_threads));
}

// Greedy ids of `prompt` from `engine`.
std::vector<int32_t> greedy(ServingEngine& engine, const std::string& id, std::vector<int32_t> prompt, int n) {
  std::promise<std::vector<int32_t>> done;
  std::vector<int32_t> ids;
  GenerationRequest r = request(id, std::move(prompt), n);
  r.params.ignore_eos = true;
  Status submitted = engine.submit(r, [&](const GenerationOutput& out) {
    ids.insert(ids.end(), out.new_token_ids.begin(), out.new_token_ids.end());
    if (out.finish_reason != FinishReason::none) done.set_value(ids);
  });
  EXPECT_TRUE(submitted.ok()) << submitted.error().message;
  return done.get_future().get();
}

TEST(ModelStages, TwoStagesOverLoopbackUcxGenerateWhatTheWholeModelDoes) {
  Config local;
  local.num_threads = 1;
  local.num_kv_blocks = 64;
  local.model = kTinyModel;
  auto whole = backends::build_engine(local);
  ASSERT_TRUE(whole.ok()) << whole.error().message;
  (*whole)->start();

  local.pipeline_parallel_size = 2;
  auto specs = plan_stages(local, 2);
  ASSERT_TRUE(specs.ok());
  std::vector<std::unique_ptr<ModelStage>> hosts;
  std::vector<std::string> addresses;
  for (const auto& spec : *specs) {
    auto host = ModelStage::prepare(spec, local, cpu_backend, "127.0.0.1");
    ASSERT_TRUE(host.ok()) << host.error().message;
    EXPECT_EQ(host.value()->preparation().max_kv_blocks, 64);
    addresses.push_back(host.value()->preparation().data_address);
    hosts.push_back(std::move(host.value()));
  }
  auto later = std::async(std::launch::async, [&] { return hosts[1]->wire(addresses, 64, 10s); });
  Status first = hosts[0]->wire(addresses, 64, 10s);
  ASSERT_TRUE(first.ok()) << first.error().message;
  ASSERT_TRUE(later.get().ok());
  ASSERT_NE(hosts[0]->engine(), nullptr);
  EXPECT_EQ(hosts[1]->engine(), nullptr);

  const std::vector<std::vector<int32_t>> prompts = {{200}, {109, 138, 192, 176, 84}, {5, 6, 7}};
  // One at a time, then concurrently (steps of several sequences in two micro-batches).
  std::vector<std::vector<int32_t>> want;
  for (size_t i = 0; i < prompts.size(); ++i) {
    want.push_back(greedy(**whole, "w" + std::to_string(i), prompts[i], 24));
    EXPECT_EQ(greedy(*hosts[0]->engine(), "p" + std::to_string(i), prompts[i], 24), want[i]) << "prompt " << i;
  }
  std::vector<std::future<std::vector<int32_t>>> together;
  for (size_t i = 0; i < prompts.size(); ++i)
    together.push_back(std::async(std::launch::async, [&, i] {
      return greedy(*hosts[0]->engine(), "c" + std::to_string(i), prompts[i], 24);
    }));
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(together[i].get(), want[i]) << "prompt " << i;

  // Losing the last stage breaks the pipeline: requests end with an error instead of hanging.
  hosts[1].reset();
  GenerationRequest r = request("after", {1, 2, 3}, 8);
  std::promise<GenerationOutput> end;
  ASSERT_TRUE(hosts[0]->engine()->submit(r, [&](const GenerationOutput& out) {
    if (out.finish_reason != FinishReason::none) end.set_value(out);
  }).ok());
  auto future = end.get_future();
  ASSERT_EQ(future.wait_for(30s), std::future_status::ready) << "a request hung after its stage went away";
  EXPECT_EQ(future.get().finish_reason, FinishReason::error);
  (*whole)->stop();
}

// A PipelineModel over a StageRunner, split into micro-batches from the first token on: the logits
// of a three-sequence prefill and of the decode step after it equal the whole model's.
TEST(PipelineModelSplit, MicroBatchedStepsMatchTheWholeModel) {
  CpuBackend whole_backend(1);
  auto whole = load_model(kTinyModel, whole_backend, LayerRange{});
  ASSERT_TRUE(whole.ok());
  auto first_backend = std::make_unique<CpuBackend>(1);
  auto last_backend = std::make_unique<CpuBackend>(1);
  auto first = load_model(kTinyModel, *first_backend, LayerRange{0, 1});
  auto last = load_model(kTinyModel, *last_backend, LayerRange{1, -1});
  ASSERT_TRUE(first.ok() && last.ok());

  auto into_last = TensorListener::listen("127.0.0.1", 0);
  auto back_to_first = TensorListener::listen("127.0.0.1", 0);
  ASSERT_TRUE(into_last.ok() && back_to_first.ok());
  auto accepted_last = std::async(std::launch::async, [&] { return into_last->accept(10s); });
  auto to_last = TensorChannel::connect("127.0.0.1", into_last->port(), 10s);
  auto accepted_first = std::async(std::launch::async, [&] { return back_to_first->accept(10s); });
  auto from_last_side = TensorChannel::connect("127.0.0.1", back_to_first->port(), 10s);
  auto from_first = accepted_last.get();
  auto from_last = accepted_first.get();
  ASSERT_TRUE(to_last.ok() && from_last_side.ok() && from_first.ok() && from_last.ok());

  const int64_t num_blocks = 32, block_size = 16;
  auto last_cache = last_backend->create_kv_cache(last.value()->kv_cache_spec(num_blocks, block_size));
  ASSERT_TRUE(last_cache.ok());
  StageRunner runner(std::move(last_backend), std::move(last.value()), std::move(last_cache.value()),
                     std::move(from_first.value()), std::move(from_last_side.value()), 10s);
  runner.start();
  PipelineModelOptions options;
  options.max_micro_batches = 2;
  options.min_tokens_to_split = 1;  // split every step, decode too
  CpuBackend& first_ref = *first_backend;
  PipelineModel pipeline(std::move(first.value()), first_ref, std::move(to_last.value()), std::move(from_last.value()),
                         options);
  auto cache = first_ref.create_kv_cache(pipeline.kv_cache_spec(num_blocks, block_size));
  auto whole_cache = whole_backend.create_kv_cache(whole.value()->kv_cache_spec(num_blocks, block_size));
  ASSERT_TRUE(cache.ok() && whole_cache.ok());

  std::vector<std::vector<int32_t>> tables = {{0, 1}, {2}, {3, 4}};
  const std::vector<std::vector<int32_t>> prompts = {{200, 7, 9}, {109, 138}, {5, 6, 7, 8, 9}};
  auto step = [&](bool prefill) {
    ForwardBatch batch;
    for (size_t s = 0; s < prompts.size(); ++s) {
      const int32_t n = prefill ? int32_t(prompts[s].size()) : 1;
      const int32_t start = prefill ? 0 : int32_t(prompts[s].size());
      for (int32_t i = 0; i < n; ++i) {
        batch.token_ids.push_back(prefill ? prompts[s][size_t(i)] : 42);
        batch.positions.push_back(start + i);
      }
      batch.seqs.push_back(SequenceSlice{n, start + n, &tables[s], true});
    }
    auto got = pipeline.forward(batch, cache.value(), LogitsMode::last_token);
    auto want = whole.value()->forward(batch, whole_cache.value(), LogitsMode::last_token);
    ASSERT_TRUE(got.ok()) << got.error().message;
    ASSERT_TRUE(want.ok());
    ASSERT_EQ(got->shape(), want->shape());
    float max_diff = 0;
    for (int64_t i = 0; i < got->numel(); ++i)
      max_diff = std::max(max_diff, std::abs(got->data<float>()[i] - want->data<float>()[i]));
    EXPECT_LE(max_diff, 1e-5f) << (prefill ? "prefill" : "decode");
  };
  step(true);
  step(false);
  EXPECT_EQ(runner.num_steps(), 4) << "two micro-batches per step";
  runner.stop();
}

}  // namespace
}  // namespace troupe::cluster
