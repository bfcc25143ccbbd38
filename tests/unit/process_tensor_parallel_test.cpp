// Tensor parallel with ranks as processes (ProcessCollective: forked ranks joined by Unix
// sockets): the collective's sums, gathers and failures, and every fixture split over 2 and 4
// forked ranks against its transformers oracle and against the same split with thread ranks
// (bit for bit).
// Each rank runs the same greedy loop over its own shard: the LM head's all-gather hands every
// rank the full logits, so every rank picks the same tokens and the ranks stay in lockstep.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <functional>

#include "backends/cpu_backend.hpp"
#include "backends/stage_model_factory.hpp"
#include "engine/model_runner.hpp"
#include "models/tensor_parallel.hpp"
#include "runtime/model_config.hpp"
#include "runtime/process_collective.hpp"
#include "runtime/safetensors_file.hpp"
#include "tests/unit/fixture_oracle.hpp"

namespace troupe {
namespace {

constexpr float kVsOracle = 1e-3f;  // the TP=1 fixture test's bound (llama_model_fixture_test)
// Against thread ranks: equal bit for bit, since ProcessCollective sums in ThreadCollective's order.

// Forks ranks 1..size-1, each running `rank_body(collective)` and exiting 0 when it returns true;
// runs rank 0's body here. Returns the children's pids.
std::vector<pid_t> fork_ranks(const SocketStar& star, std::chrono::milliseconds timeout,
                              const std::function<bool(Collective&)>& rank_body) {
  std::vector<pid_t> children;
  for (int64_t r = 1; r < star.size; ++r) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      auto collective = make_process_collective(star, r, timeout);
      const bool ok = rank_body(*collective);
      ::_exit(ok ? 0 : 1);  // no gtest teardown in a child
    }
    children.push_back(pid);
  }
  return children;
}

// Exit codes of `children` (-1: killed or still running after `limit`).
std::vector<int> reap(const std::vector<pid_t>& children, std::chrono::seconds limit = std::chrono::seconds(120)) {
  std::vector<int> codes;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  for (pid_t pid : children) {
    int status = 0;
    pid_t done = 0;
    while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline)
      ::usleep(10000);
    if (done == 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      codes.push_back(-1);
    } else {
      codes.push_back(WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
  }
  return codes;
}

TEST(ProcessCollective, SumsAndGathersAcrossForkedRanks) {
  const int64_t size = 3;
  auto star = make_socket_star(size);
  ASSERT_TRUE(star.ok());
  // Rank r: sum of {r, 10 r, 1} and a gather of its [2, 2] block into [2, 5] (one column of padding).
  auto body = [](Collective& c) {
    const float r = float(c.rank());
    Tensor t = Tensor::from_f32({r, 10.0f * r, 1.0f}, {3});
    if (!c.all_reduce_sum(t).ok()) return false;
    const bool sum_ok = t.data<float>()[0] == 3.0f && t.data<float>()[1] == 30.0f && t.data<float>()[2] == 3.0f;
    Tensor block = Tensor::from_f32({100 * r, 100 * r + 1, 100 * r + 10, 100 * r + 11}, {2, 2});
    Tensor out = Tensor::zeros(DType::f32, {2, 5});
    if (!c.all_gather(block, out).ok()) return false;
    bool gather_ok = true;
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < 5; ++j) gather_ok &= out.data<float>()[i * 5 + j] == float(100 * (j / 2) + 10 * i + j % 2);
    return sum_ok && gather_ok;
  };
  const auto children = fork_ranks(star.value(), std::chrono::milliseconds(20000), body);
  auto rank0 = make_process_collective(star.value(), 0, std::chrono::milliseconds(20000));
  EXPECT_TRUE(body(*rank0));
  EXPECT_EQ(reap(children), (std::vector<int>{0, 0}));
}

TEST(ProcessCollective, ARankThatDiesFailsTheOthersAtOnce) {
  auto star = make_socket_star(2);
  ASSERT_TRUE(star.ok());
  const auto children = fork_ranks(star.value(), std::chrono::milliseconds(20000), [](Collective&) { return true; });
  auto rank0 = make_process_collective(star.value(), 0, std::chrono::milliseconds(20000));
  Tensor t = Tensor::from_f32({1, 2}, {2});
  const auto start = std::chrono::steady_clock::now();
  Status status = rank0->all_reduce_sum(t);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, ErrorCode::unavailable) << status.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10)) << "EOF, not the timeout";
  EXPECT_EQ(reap(children), (std::vector<int>{0}));
  EXPECT_EQ(rank0->all_reduce_sum(t).error().code, ErrorCode::unavailable) << "the group stays aborted";
}

TEST(ProcessCollective, ARankThatNeverArrivesTimesOutInsteadOfHanging) {
  auto star = make_socket_star(2);
  ASSERT_TRUE(star.ok());
  const auto children = fork_ranks(star.value(), std::chrono::milliseconds(20000), [](Collective&) {
    ::sleep(30);  // alive, never calls
    return true;
  });
  auto rank0 = make_process_collective(star.value(), 0, std::chrono::milliseconds(300));
  Tensor t = Tensor::from_f32({1, 2}, {2});
  EXPECT_EQ(rank0->all_reduce_sum(t).error().code, ErrorCode::timeout);
  for (pid_t pid : children) ::kill(pid, SIGKILL);
  reap(children);
}

TEST(ProcessCollective, RanksCallingDifferentCollectivesAreRefused) {
  auto star = make_socket_star(2);
  ASSERT_TRUE(star.ok());
  const auto children = fork_ranks(star.value(), std::chrono::milliseconds(20000), [](Collective& c) {
    Tensor t = Tensor::from_f32({1, 2, 3}, {3});  // rank 0 sums 2 floats
    return !c.all_reduce_sum(t).ok();
  });
  auto rank0 = make_process_collective(star.value(), 0, std::chrono::milliseconds(20000));
  Tensor t = Tensor::from_f32({1, 2}, {2});
  EXPECT_EQ(rank0->all_reduce_sum(t).error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(reap(children), (std::vector<int>{0})) << "the other rank fails too (the group aborted)";
}

using PromptLogits = std::vector<std::vector<float>>;  // [position][vocab]

// Every oracle prompt through greedy_generate on rank `c.rank()`'s shard; false on any error.
bool run_shard(const std::string& dir, Collective& c, const Oracle& oracle, std::vector<PromptLogits>* logits,
               std::vector<std::vector<int32_t>>* tokens, std::string* error) {
  CpuBackend backend(1);
  auto model = load_model_shard(dir, "auto", backend, LayerRange{}, c);
  if (!model.ok()) {
    *error = model.error().message;
    c.abort(*error);
    return false;
  }
  for (const auto& prompt : oracle.prompts) {
    auto result = greedy_generate(*model.value(), backend, prompt, oracle.max_new_tokens, 16, true);
    if (!result.ok()) {
      *error = result.error().message;
      c.abort(*error);
      return false;
    }
    if (logits) logits->push_back(std::move(result->prompt_logits));
    if (tokens) tokens->push_back(std::move(result->tokens));
  }
  return true;
}

std::vector<PromptLogits> thread_rank_logits(const std::string& dir, int64_t size, const Oracle& oracle) {
  Config config;
  config.model = dir;
  config.tensor_parallel_size = size;
  config.num_threads = size;
  config.device = "cpu";
  CpuBackend rank0(1);
  std::vector<PromptLogits> logits;
  auto model = backends::load_stage_model(config, rank0);
  EXPECT_TRUE(model.ok()) << model.error().message;
  if (!model.ok()) return logits;
  for (const auto& prompt : oracle.prompts) {
    auto result = greedy_generate(*model.value(), rank0, prompt, oracle.max_new_tokens, 16, true);
    EXPECT_TRUE(result.ok()) << result.error().message;
    if (!result.ok()) return logits;
    logits.push_back(std::move(result->prompt_logits));
  }
  return logits;
}

TEST(ProcessTensorParallel, ForkedRanksMatchTheOracleAndThreadRanks) {
  int64_t num_checked = 0;
  for (const auto& dir : fixture_dirs(FixtureSet::all)) {
    auto full = ModelConfig::load(dir);
    ASSERT_TRUE(full.ok());
    const Oracle oracle = read_oracle(dir);
    auto oracle_logits = SafetensorsFile::open(dir + "/oracle_logits.safetensors");
    ASSERT_TRUE(oracle_logits.ok());
    const int64_t vocab = full->vocab_size;
    for (int64_t size : {2, 4}) {
      if (!tensor_parallel_config(full.value(), size).ok()) continue;  // heads or experts do not divide
      const std::string name = dir.substr(dir.rfind('/') + 1);
      SCOPED_TRACE(name + " TP=" + std::to_string(size) + " (processes)");
      auto star = make_socket_star(size);
      ASSERT_TRUE(star.ok());
      const auto timeout = std::chrono::milliseconds(60000);
      const auto children = fork_ranks(star.value(), timeout, [&](Collective& c) {
        std::string error;
        const bool ok = run_shard(dir, c, oracle, nullptr, nullptr, &error);
        if (!ok) std::fprintf(stderr, "rank %lld: %s\n", static_cast<long long>(c.rank()), error.c_str());
        return ok;
      });
      auto rank0 = make_process_collective(star.value(), 0, timeout);
      std::vector<PromptLogits> logits;
      std::vector<std::vector<int32_t>> tokens;
      std::string error;
      const bool ok = run_shard(dir, *rank0, oracle, &logits, &tokens, &error);
      EXPECT_TRUE(ok) << error;
      EXPECT_EQ(reap(children), std::vector<int>(size_t(size - 1), 0)) << "every forked rank ran to the end";
      if (!ok) continue;
      const std::vector<PromptLogits> threads = thread_rank_logits(dir, size, oracle);
      ASSERT_EQ(threads.size(), oracle.prompts.size());
      float vs_oracle = 0.0f, vs_threads = 0.0f;
      for (size_t i = 0; i < oracle.prompts.size(); ++i) {
        EXPECT_EQ(tokens[i], oracle.greedy[i]) << "prompt " << i;
        const float* want = static_cast<const float*>(oracle_logits.value()->find("logits." + std::to_string(i))->data);
        ASSERT_EQ(logits[i].size(), threads[i].size());
        for (size_t t = 0; t < logits[i].size(); ++t)
          for (int64_t v = 0; v < vocab; ++v) {
            vs_oracle = std::max(vs_oracle, std::abs(logits[i][t][size_t(v)] - want[int64_t(t) * vocab + v]));
            vs_threads = std::max(vs_threads, std::abs(logits[i][t][size_t(v)] - threads[i][t][size_t(v)]));
          }
      }
      EXPECT_LE(vs_oracle, kVsOracle);
      EXPECT_EQ(vs_threads, 0.0f);
      std::printf("%s TP=%lld processes: max |logit diff| vs transformers %.2e, vs thread ranks %.2e\n", name.c_str(),
                  static_cast<long long>(size), double(vs_oracle), double(vs_threads));
      ++num_checked;
    }
  }
  EXPECT_GE(num_checked, 12) << "too few fixture/TP combinations ran";
}

}  // namespace
}  // namespace troupe
