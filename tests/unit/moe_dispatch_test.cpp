// Expert parallel with token dispatch (--all2all-backend all_to_all): the host plan
// (models/moe_dispatch.hpp), ThreadCollective's all_to_all, and one MoE layer of
// deepseek-v3-tiny over 2 and 4 thread ranks dispatching its tokens, against the layer on one
// rank (fp32: only the order of the sums differs, bound kVsOneRank).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <thread>

#include "backends/cpu_backend.hpp"
#include "models/moe.hpp"
#include "models/model_loader.hpp"
#include "models/moe_dispatch.hpp"
#include "models/tensor_parallel.hpp"
#include "runtime/model_config.hpp"
#include "runtime/thread_collective.hpp"
#include "runtime/weight_store.hpp"

namespace troupe {
namespace {

constexpr float kVsOneRank = 1e-5f;  // relative to the largest |output|, fp32 on the CPU

const std::string kTiny = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/deepseek-v3-tiny";

TEST(MoeDispatch, TokenSharesCoverTheBatchOnce) {
  for (int64_t n : {0, 1, 3, 7, 64})
    for (int64_t size : {1, 2, 4, 8}) {
      int64_t next = 0;
      for (int64_t r = 0; r < size; ++r) {
        const TokenShare share = token_share(n, r, size);
        EXPECT_EQ(share.first, next) << n << " over " << size;
        EXPECT_GE(share.count, 0);
        next += share.count;
      }
      EXPECT_EQ(next, n);
    }
}

TEST(MoeDispatch, APlanSendsEachTokenOnceToEveryRankOfItsExperts) {
  // 8 experts over 2 ranks ([0, 4) and [4, 8)), k = 2; tokens 5, 6, 7 of a batch.
  const MoeRouting routing{{1, 3, 2, 6, 7, 4}, {0.5f, 0.25f, 0.75f, 0.125f, 1.5f, 2.0f}};
  const MoeDispatchPlan plan = plan_moe_dispatch(routing, 5, 3, 2, 8, 2);
  EXPECT_EQ(plan.send_rows, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(plan.token_of_row, (std::vector<int32_t>{5, 6, 6, 7}));  // rank 0's rows, then rank 1's
  const std::vector<float> pairs = {1, 0.5f, 3, 0.25f,    // token 5: both experts on rank 0
                                    2, 0.75f, -1, 0,      // token 6: expert 2 on rank 0 ...
                                    -1, 0, 6, 0.125f,     // ... expert 6 on rank 1
                                    7, 1.5f, 4, 2.0f};    // token 7: both on rank 1
  EXPECT_EQ(plan.pairs, pairs);
  const MoeRouting back = routing_of_pairs(plan.pairs.data(), 4, 2);
  EXPECT_EQ(back.experts, (std::vector<int32_t>{1, 3, 2, -1, -1, 6, 7, 4}));
  EXPECT_EQ(back.weights, (std::vector<float>{0.5f, 0.25f, 0.75f, 0, 0, 0.125f, 1.5f, 2.0f}));
}

// Runs body(rank, collective) on `size` threads; returns each rank's result.
std::vector<Status> on_thread_ranks(int64_t size, const std::function<Status(int64_t, Collective&)>& body,
                                    std::chrono::milliseconds timeout = std::chrono::milliseconds(20000)) {
  auto ranks = make_thread_collectives(size, timeout);
  std::vector<Status> results(static_cast<size_t>(size));
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < size; ++r)
    threads.emplace_back([&, r] { results[size_t(r)] = body(r, *ranks[size_t(r)]); });
  for (auto& t : threads) t.join();
  return results;
}

TEST(ThreadCollective, AllToAllMovesEachRanksRowsAsBytes) {
  const int64_t size = 3, cols = 3;
  // Rank s sends rank d (s + 2 d) % 3 rows (some zero); row j of that block holds 100 s + 10 d + j.
  auto count = [](int64_t s, int64_t d) { return (s + 2 * d) % 3; };
  const auto results = on_thread_ranks(size, [&](int64_t rank, Collective& c) -> Status {
    std::vector<int64_t> send_rows;
    std::vector<int32_t> values;
    for (int64_t d = 0; d < size; ++d) {
      send_rows.push_back(count(rank, d));
      for (int64_t j = 0; j < count(rank, d); ++j)
        for (int64_t col = 0; col < cols; ++col) values.push_back(int32_t(100 * rank + 10 * d + j));
    }
    auto recv_rows = c.all_to_all_counts(send_rows);
    if (!recv_rows.ok()) return recv_rows.error();
    for (int64_t s = 0; s < size; ++s)
      if (recv_rows.value()[size_t(s)] != count(s, rank)) return make_error(ErrorCode::internal, "counts");
    int64_t total = 0;
    for (int64_t n : recv_rows.value()) total += n;
    Tensor send = Tensor::from_i32(values, {int64_t(values.size()) / cols, cols});
    Tensor recv = Tensor::zeros(DType::i32, {total, cols});
    TROUPE_TRY(c.all_to_all(send, send_rows, recv, recv_rows.value()));
    int64_t row = 0;
    for (int64_t s = 0; s < size; ++s)
      for (int64_t j = 0; j < count(s, rank); ++j, ++row)
        for (int64_t col = 0; col < cols; ++col)
          if (recv.data<int32_t>()[row * cols + col] != int32_t(100 * s + 10 * rank + j))
            return make_error(ErrorCode::internal, "rank " + std::to_string(rank) + ": row " + std::to_string(row));
    return Status::success();
  });
  for (const Status& s : results) EXPECT_TRUE(s.ok()) << s.error().message;
}

TEST(ThreadCollective, AllToAllCountsThatDisagreeFailEveryRank) {
  const auto results = on_thread_ranks(2, [](int64_t rank, Collective& c) -> Status {
    // Rank 0 sends rank 1 two rows; rank 1 expects one.
    const std::vector<int64_t> send_rows = rank == 0 ? std::vector<int64_t>{0, 2} : std::vector<int64_t>{0, 0};
    const std::vector<int64_t> recv_rows = rank == 0 ? std::vector<int64_t>{0, 0} : std::vector<int64_t>{1, 0};
    Tensor send = Tensor::zeros(DType::f32, {rank == 0 ? 2 : 0, 4});
    Tensor recv = Tensor::zeros(DType::f32, {rank == 0 ? 0 : 1, 4});
    return c.all_to_all(send, send_rows, recv, recv_rows);
  });
  for (const Status& s : results) {
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code, ErrorCode::invalid_argument);
    EXPECT_NE(s.error().message.find("rank 0 sends rank 1 2 rows"), std::string::npos) << s.error().message;
  }
}

TEST(ThreadCollective, AllToAllWithBadArgumentsAbortsTheOthersInsteadOfLeavingThemWaiting) {
  const auto start = std::chrono::steady_clock::now();
  const auto results = on_thread_ranks(
      2,
      [](int64_t rank, Collective& c) -> Status {
        Tensor send = Tensor::zeros(DType::f32, {1, 4});
        Tensor recv = Tensor::zeros(DType::f32, {1, 4});
        // Rank 1's counts do not add up to its rows.
        const std::vector<int64_t> sends = rank == 0 ? std::vector<int64_t>{0, 1} : std::vector<int64_t>{1, 1};
        return c.all_to_all(send, sends, recv, {rank == 0 ? 0 : 1, rank == 0 ? 1 : 0});
      },
      std::chrono::milliseconds(20000));
  EXPECT_EQ(results[1].error().code, ErrorCode::invalid_argument);
  EXPECT_EQ(results[0].error().code, ErrorCode::unavailable) << results[0].error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10)) << "aborted, not timed out";
}

// Forwards to another Collective, counting the rows each all_to_all sends to other ranks.
class CountingCollective final : public Collective {
 public:
  explicit CountingCollective(Collective& inner) : inner_(inner) {}
  int64_t rank() const override { return inner_.rank(); }
  int64_t size() const override { return inner_.size(); }
  Status all_reduce_sum(Tensor& t) override { return inner_.all_reduce_sum(t); }
  Status all_gather(const Tensor& local, Tensor& out) override { return inner_.all_gather(local, out); }
  Result<std::vector<int64_t>> all_to_all_counts(const std::vector<int64_t>& send_rows) override {
    return inner_.all_to_all_counts(send_rows);
  }
  Status all_to_all(const Tensor& send, const std::vector<int64_t>& send_rows, Tensor& recv,
                    const std::vector<int64_t>& recv_rows) override {
    for (int64_t d = 0; d < size(); ++d)
      if (d != rank()) rows_to_others += send_rows[size_t(d)];
    ++num_calls;
    return inner_.all_to_all(send, send_rows, recv, recv_rows);
  }
  void abort(const std::string& why) override { inner_.abort(why); }
  int64_t rows_to_others = 0, num_calls = 0;

 private:
  Collective& inner_;
};

Result<std::unique_ptr<MoeMlp>> load_layer(const ModelConfig& config, WeightStore& store, int64_t rank, int64_t size,
                                           Backend& backend) {
  const WeightLoader full = weight_store_loader(store, config.quantization);
  const std::string prefix = "model.layers." + std::to_string(config.moe.first_k_dense_replace) + ".mlp.";
  return MoeMlp::load(config, prefix, tensor_parallel_loader(full, rank, size, config.vocab_size), backend);
}

TEST(MoeDispatch, ALayerOverRanksDispatchingTokensEqualsTheLayerOnOneRank) {
  auto full = ModelConfig::load(kTiny);
  ASSERT_TRUE(full.ok());
  auto store = WeightStore::open(kTiny);
  ASSERT_TRUE(store.ok());
  const int64_t hidden = full->hidden_size;
  CpuBackend one_backend(1);
  auto one = load_layer(full.value(), store.value(), 0, 1, one_backend);
  ASSERT_TRUE(one.ok()) << one.error().message;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t n : {1, 3, 7, 16}) {
    std::vector<float> values(size_t(n * hidden));
    for (float& v : values) v = normal(rng);
    const Tensor x = Tensor::from_f32(values, {n, hidden});
    Tensor want = Tensor::zeros(DType::f32, {n, hidden});
    one.value()->forward(x, want);
    float scale = 0.0f;
    for (int64_t i = 0; i < n * hidden; ++i) scale = std::max(scale, std::abs(want.data<float>()[i]));
    for (int64_t size : {2, 4}) {
      SCOPED_TRACE("n " + std::to_string(n) + ", " + std::to_string(size) + " ranks");
      std::vector<Tensor> outs(static_cast<size_t>(size));
      std::atomic<int64_t> rows_to_others{0};
      const auto results = on_thread_ranks(size, [&](int64_t rank, Collective& inner) -> Status {
        CountingCollective c(inner);
        CpuBackend backend(1);
        auto local = tensor_parallel_config(full.value(), size, rank);
        if (!local.ok()) return local.error();
        local->moe.dispatch_tokens = true;
        auto layer = load_layer(local.value(), store.value(), rank, size, backend);
        if (!layer.ok()) {
          c.abort(layer.error().message);
          return layer.error();
        }
        Tensor out = Tensor::zeros(DType::f32, {n, hidden});
        TROUPE_TRY(layer.value()->forward_dispatched(x, out, c));
        TROUPE_TRY(c.all_reduce_sum(out));
        if (c.num_calls != 3) return make_error(ErrorCode::internal, "expected dispatch, pairs and combine");
        rows_to_others += c.rows_to_others;
        outs[size_t(rank)] = out;
        return Status::success();
      });
      for (const Status& s : results) ASSERT_TRUE(s.ok()) << s.error().message;
      for (int64_t r = 0; r < size; ++r) {
        float diff = 0.0f;
        for (int64_t i = 0; i < n * hidden; ++i)
          diff = std::max(diff, std::abs(outs[size_t(r)].data<float>()[i] - want.data<float>()[i]));
        EXPECT_LE(diff, kVsOneRank * scale) << "rank " << r;
      }
      if (n >= size) EXPECT_GT(rows_to_others.load(), 0) << "no token crossed to another rank";
    }
  }
}

}  // namespace
}  // namespace troupe
