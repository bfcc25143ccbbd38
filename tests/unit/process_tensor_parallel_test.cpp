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

TEST(ProcessCollective, AllToAllMovesRowsAcrossForkedRanksAndRefusesCountsThatDisagree) {
  const int64_t size = 3, cols = 2;
  auto star = make_socket_star(size);
  ASSERT_TRUE(star.ok());
  // Rank s sends rank d (s + d) % 2 + d rows (rank 0 keeps none of its own); row j holds 100 s + 10 d + j.
  auto count = [](int64_t s, int64_t d) { return (s + d) % 2 + d; };
  auto body = [&](Collective& c) {
    const int64_t rank = c.rank();
    std::vector<int64_t> send_rows;
    std::vector<float> values;
    for (int64_t d = 0; d < size; ++d) {
      send_rows.push_back(count(rank, d));
      for (int64_t j = 0; j < count(rank, d); ++j)
        for (int64_t col = 0; col < cols; ++col) values.push_back(float(100 * rank + 10 * d + j));
    }
    auto recv_rows = c.all_to_all_counts(send_rows);
    if (!recv_rows.ok()) return false;
    int64_t total = 0;
    for (int64_t s = 0; s < size; ++s) {
      if (recv_rows.value()[size_t(s)] != count(s, rank)) return false;
      total += count(s, rank);
    }
    Tensor send = Tensor::from_f32(values, {int64_t(values.size()) / cols, cols});
    Tensor recv = Tensor::zeros(DType::f32, {total, cols});
    if (!c.all_to_all(send, send_rows, recv, recv_rows.value()).ok()) return false;
    int64_t row = 0;
    for (int64_t s = 0; s < size; ++s)
      for (int64_t j = 0; j < count(s, rank); ++j, ++row)
        for (int64_t col = 0; col < cols; ++col)
          if (recv.data<float>()[row * cols + col] != float(100 * s + 10 * rank + j)) return false;
    // Then counts that disagree: rank 1 expects one row more from rank 0 than rank 0 sends.
    std::vector<int64_t> wrong = recv_rows.value();
    if (rank == 1) ++wrong[0];
    int64_t wrong_total = 0;
    for (int64_t n : wrong) wrong_total += n;
    Tensor recv_wrong = Tensor::zeros(DType::f32, {wrong_total, cols});
    const Status refused = c.all_to_all(send, send_rows, recv_wrong, wrong);
    return !refused.ok();
  };
  const auto children = fork_ranks(star.value(), std::chrono::milliseconds(20000), body);
  auto rank0 = make_process_collective(star.value(), 0, std::chrono::milliseconds(20000));
  EXPECT_TRUE(body(*rank0));
  EXPECT_EQ(reap(children), (std::vector<int>{0, 0})) << "every rank moved its rows, then every rank failed";
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
               std::vector<std::vector<int32_t>>* tokens, std::string* error, bool dispatch_tokens = false) {
  CpuBackend backend(1);
  auto model = load_model_shard(dir, "auto", backend, LayerRange{}, c, dispatch_tokens);
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

std::vector<PromptLogits> thread_rank_logits(const std::string& dir, int64_t size, const Oracle& oracle,
                                             bool dispatch_tokens = false) {
  Config config;
  if (dispatch_tokens) config.all2all_backend = "all_to_all";
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

// Every fixture of `set` at TP=2 and 4 over forked ranks (MoE tokens dispatched to their experts'
// ranks when `dispatch_tokens`); returns the fixture/TP combinations checked.
int64_t expect_forked_ranks_match(FixtureSet set, bool dispatch_tokens) {
  int64_t num_checked = 0;
  for (const auto& dir : fixture_dirs(set)) {
    auto full = ModelConfig::load(dir);
    EXPECT_TRUE(full.ok());
    if (!full.ok()) continue;
    const Oracle oracle = read_oracle(dir);
    auto oracle_logits = SafetensorsFile::open(dir + "/oracle_logits.safetensors");
    EXPECT_TRUE(oracle_logits.ok());
    if (!oracle_logits.ok()) continue;
    const int64_t vocab = full->vocab_size;
    for (int64_t size : {2, 4}) {
      if (!tensor_parallel_config(full.value(), size).ok()) continue;  // heads or experts do not divide
      const std::string name = dir.substr(dir.rfind('/') + 1);
      SCOPED_TRACE(name + " TP=" + std::to_string(size) + " (processes)");
      auto star = make_socket_star(size);
      EXPECT_TRUE(star.ok());
      if (!star.ok()) continue;
      const auto timeout = std::chrono::milliseconds(60000);
      const auto children = fork_ranks(star.value(), timeout, [&](Collective& c) {
        std::string error;
        const bool ok = run_shard(dir, c, oracle, nullptr, nullptr, &error, dispatch_tokens);
        if (!ok) std::fprintf(stderr, "rank %lld: %s\n", static_cast<long long>(c.rank()), error.c_str());
        return ok;
      });
      auto rank0 = make_process_collective(star.value(), 0, timeout);
      std::vector<PromptLogits> logits;
      std::vector<std::vector<int32_t>> tokens;
      std::string error;
      const bool ok = run_shard(dir, *rank0, oracle, &logits, &tokens, &error, dispatch_tokens);
      EXPECT_TRUE(ok) << error;
      EXPECT_EQ(reap(children), std::vector<int>(size_t(size - 1), 0)) << "every forked rank ran to the end";
      if (!ok) continue;
      const std::vector<PromptLogits> threads = thread_rank_logits(dir, size, oracle, dispatch_tokens);
      EXPECT_EQ(threads.size(), oracle.prompts.size());
      if (threads.size() != oracle.prompts.size()) continue;
      float vs_oracle = 0.0f, vs_threads = 0.0f;
      for (size_t i = 0; i < oracle.prompts.size(); ++i) {
        EXPECT_EQ(tokens[i], oracle.greedy[i]) << "prompt " << i;
        const float* want = static_cast<const float*>(oracle_logits.value()->find("logits." + std::to_string(i))->data);
        EXPECT_EQ(logits[i].size(), threads[i].size());
        if (logits[i].size() != threads[i].size()) continue;
        for (size_t t = 0; t < logits[i].size(); ++t)
          for (int64_t v = 0; v < vocab; ++v) {
            vs_oracle = std::max(vs_oracle, std::abs(logits[i][t][size_t(v)] - want[int64_t(t) * vocab + v]));
            vs_threads = std::max(vs_threads, std::abs(logits[i][t][size_t(v)] - threads[i][t][size_t(v)]));
          }
      }
      EXPECT_LE(vs_oracle, kVsOracle);
      EXPECT_EQ(vs_threads, 0.0f);
      std::printf("%s TP=%lld processes%s: max |logit diff| vs transformers %.2e, vs thread ranks %.2e\n",
                  name.c_str(), static_cast<long long>(size), dispatch_tokens ? " (tokens dispatched)" : "",
                  double(vs_oracle), double(vs_threads));
      ++num_checked;
    }
  }
  return num_checked;
}

TEST(ProcessTensorParallel, ForkedRanksMatchTheOracleAndThreadRanks) {
  EXPECT_GE(expect_forked_ranks_match(FixtureSet::all, false), 12) << "too few fixture/TP combinations ran";
}

// --all2all-backend all_to_all over ProcessCollective: the rows cross processes; the sums keep
// thread ranks' order, so both stay bit-equal.
TEST(ProcessTensorParallel, ForkedRanksDispatchingTokensMatchTheOracleAndThreadRanks) {
  EXPECT_GE(expect_forked_ranks_match(FixtureSet::deepseek, true), 7) << "too few fixture/TP combinations ran";
}

}  // namespace
}  // namespace troupe
