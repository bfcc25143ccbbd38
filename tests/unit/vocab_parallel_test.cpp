// Vocabulary-parallel embedding and LM head (models/vocab_parallel.hpp): the loader's padded row
// blocks, the all-gather's column placement, and whole models whose vocabulary does not divide by
// the ranks (the fixtures' 512 and 129280 all do, so their padding is never exercised): a fixture
// cut to an odd vocabulary at TP=2 / 4 must give TP=1's logits (thread ranks, fp32).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <thread>

#include "backends/cpu_backend.hpp"
#include "engine/model_runner.hpp"
#include "models/model_loader.hpp"
#include "models/tensor_parallel.hpp"
#include "models/tensor_parallel_model.hpp"
#include "models/vocab_parallel.hpp"
#include "runtime/model_config.hpp"
#include "runtime/thread_collective.hpp"
#include "runtime/weight_store.hpp"
#include "tests/unit/fixture_oracle.hpp"

namespace troupe {
namespace {

constexpr float kTpVsOneRank = 5e-5f;  // deepseek_tensor_parallel_test's bound: fp32, only the sums' order differs

TEST(VocabParallel, ShardsPadTheVocabularyUpToAMultipleOfTheRanks) {
  const VocabShard last{10, 3, 4};  // V 10 over 4 ranks: Vp 12, 3 rows each, rank 3 holds 9 + padding
  EXPECT_EQ(last.num_rows(), 3);
  EXPECT_EQ(last.begin(), 9);
  EXPECT_EQ(last.num_real_rows(), 1);
  const VocabShard whole{10, 0, 1};
  EXPECT_EQ(whole.num_rows(), 10);
  EXPECT_EQ(whole.num_real_rows(), 10);
  EXPECT_EQ((VocabShard{5, 3, 4}.num_real_rows()), 0);  // rows 6, 7: only padding
}

TEST(VocabParallel, TheLoaderServesEachRankItsRowsWithZeroPadding) {
  const int64_t vocab = 10, hidden = 3;
  WeightLoader full = [&](const std::string& name, const std::vector<int64_t>& shape) -> Result<Tensor> {
    EXPECT_EQ(shape, (std::vector<int64_t>{vocab, hidden})) << name;
    Tensor t = Tensor::empty(DType::f32, shape);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(1 + i / hidden);  // row i holds i + 1
    return t;
  };
  for (const char* name : {"model.embed_tokens.weight", "lm_head.weight"}) {
    for (int64_t rank = 0; rank < 4; ++rank) {
      SCOPED_TRACE(std::string(name) + " rank " + std::to_string(rank));
      auto shard = tensor_parallel_loader(full, rank, 4, vocab)(name, {3, hidden});
      ASSERT_TRUE(shard.ok()) << shard.error().message;
      ASSERT_EQ(shard->shape(), (std::vector<int64_t>{3, hidden}));
      for (int64_t row = 0; row < 3; ++row) {
        const int64_t id = rank * 3 + row;
        const float want = id < vocab ? float(id + 1) : 0.0f;
        for (int64_t c = 0; c < hidden; ++c) EXPECT_EQ(shard->data<float>()[row * hidden + c], want) << "row " << row;
      }
    }
  }
  auto wrong = tensor_parallel_loader(full, 0, 4, vocab)("lm_head.weight", {vocab, hidden});
  EXPECT_FALSE(wrong.ok()) << "a rank asking for the whole table is a bug, not a shard";
}

TEST(VocabParallel, ThreadAllGatherPlacesEachRanksColumnsAndDropsThePadding) {
  const int64_t size = 3, rows = 2, cols = 2, width = 5;  // 6 columns gathered, the last one padding
  auto ranks = make_thread_collectives(size);
  std::vector<Tensor> outs;
  for (int64_t r = 0; r < size; ++r) outs.push_back(Tensor::from_f32(std::vector<float>(rows * width, NAN), {rows, width}));
  std::vector<Status> results(size_t(size), Status::success());
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < size; ++r)
    threads.emplace_back([&, r] {
      std::vector<float> local;
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t c = 0; c < cols; ++c) local.push_back(float(100 * r + 10 * i + c));
      Tensor block = Tensor::from_f32(local, {rows, cols});
      results[size_t(r)] = ranks[size_t(r)]->all_gather(block, outs[size_t(r)]);
    });
  for (auto& t : threads) t.join();
  for (int64_t r = 0; r < size; ++r) {
    ASSERT_TRUE(results[size_t(r)].ok()) << results[size_t(r)].error().message;
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < width; ++j)
        EXPECT_EQ(outs[size_t(r)].data<float>()[i * width + j], float(100 * (j / cols) + 10 * i + j % cols))
            << "rank " << r << " row " << i << " column " << j;
  }
}

TEST(VocabParallel, AnOutputTooNarrowOrWideIsRefused) {
  auto ranks = make_thread_collectives(2, std::chrono::milliseconds(200));
  Tensor local = Tensor::zeros(DType::f32, {2, 3});
  Tensor wide = Tensor::zeros(DType::f32, {2, 7});
  EXPECT_EQ(ranks[0]->all_gather(local, wide).error().code, ErrorCode::invalid_argument);
  Tensor rows = Tensor::zeros(DType::f32, {3, 6});
  EXPECT_EQ(ranks[0]->all_gather(local, rows).error().code, ErrorCode::invalid_argument);
}

// `dir`'s model with its vocabulary cut to `vocab` rows (embedding and LM head), at `size` thread
// ranks (1: the plain model).
Result<std::unique_ptr<Model>> cut_vocab_model(const std::string& dir, int64_t vocab, int64_t size, const WeightStore& store,
                                               Backend& rank0) {
  auto full = ModelConfig::load(dir);
  if (!full.ok()) return full.error();
  const int64_t stored_vocab = full->vocab_size;
  full->vocab_size = vocab;
  const WeightLoader stored = weight_store_loader(store, full->quantization);
  WeightLoader cut = [stored, stored_vocab, vocab](const std::string& name,
                                                   const std::vector<int64_t>& shape) -> Result<Tensor> {
    if (name != "model.embed_tokens.weight" && name != "lm_head.weight") return stored(name, shape);
    std::vector<int64_t> whole = shape;
    whole[0] = stored_vocab;
    auto t = stored(name, whole);
    if (!t.ok()) return t.error();
    return t->rows(0, vocab).clone();
  };
  if (size == 1) return load_model(full.value(), cut, rank0, LayerRange{});
  auto collectives = make_thread_collectives(size);
  std::vector<TensorParallelRank> ranks(static_cast<size_t>(size));
  for (int64_t r = 0; r < size; ++r) {
    if (r > 0) ranks[size_t(r)].backend = std::make_unique<CpuBackend>(1);
    Backend& on = r == 0 ? rank0 : *ranks[size_t(r)].backend;
    auto local = tensor_parallel_config(full.value(), size, r);
    if (!local.ok()) return local.error();
    auto model = load_model(local.value(), tensor_parallel_loader(cut, r, size, vocab), on, LayerRange{});
    if (!model.ok()) return model.error();
    TROUPE_TRY(model.value()->set_tensor_parallel(collectives[size_t(r)].get()));
    ranks[size_t(r)].model = std::move(model.value());
    ranks[size_t(r)].collective = std::move(collectives[size_t(r)]);
  }
  return std::unique_ptr<Model>(std::make_unique<TensorParallelModel>(std::move(ranks)));
}

TEST(VocabParallel, AVocabularyThatDoesNotDivideGivesOneRanksLogits) {
  struct Case {
    const char* fixture;
    int64_t vocab, size;
  };
  // qwen2-tiny ties its LM head to the embedding; deepseek-v3-tiny's 4 heads split over 4 ranks.
  const Case cases[] = {{"qwen2-tiny", 511, 2}, {"llama-tiny", 509, 2}, {"deepseek-v3-tiny", 509, 4},
                        {"deepseek-v3-tiny", 510, 4}};
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.fixture) + " vocab " + std::to_string(c.vocab) + " TP=" + std::to_string(c.size));
    const std::string dir = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/" + c.fixture;
    auto store = WeightStore::open(dir);
    ASSERT_TRUE(store.ok());
    Oracle oracle = read_oracle(dir);
    CpuBackend one_backend(1), tp_backend(1);
    auto one = cut_vocab_model(dir, c.vocab, 1, store.value(), one_backend);
    ASSERT_TRUE(one.ok()) << one.error().message;
    auto tp = cut_vocab_model(dir, c.vocab, c.size, store.value(), tp_backend);
    ASSERT_TRUE(tp.ok()) << tp.error().message;
    float diff = 0.0f;
    for (auto prompt : oracle.prompts) {
      // The last ids, on the padded rank, are the ones whose rows move: put them in every prompt.
      for (auto& id : prompt) id %= int32_t(c.vocab);
      prompt.push_back(int32_t(c.vocab - 1));
      prompt.push_back(int32_t(c.vocab - 2));
      auto a = greedy_generate(*one.value(), one_backend, prompt, oracle.max_new_tokens, 16, true);
      auto b = greedy_generate(*tp.value(), tp_backend, prompt, oracle.max_new_tokens, 16, true);
      ASSERT_TRUE(a.ok()) << a.error().message;
      ASSERT_TRUE(b.ok()) << b.error().message;
      EXPECT_EQ(b->tokens, a->tokens);
      ASSERT_EQ(b->prompt_logits.size(), a->prompt_logits.size());
      for (size_t t = 0; t < a->prompt_logits.size(); ++t) {
        ASSERT_EQ(b->prompt_logits[t].size(), size_t(c.vocab));
        for (int64_t v = 0; v < c.vocab; ++v)
          diff = std::max(diff, std::abs(b->prompt_logits[t][size_t(v)] - a->prompt_logits[t][size_t(v)]));
      }
    }
    EXPECT_LE(diff, kTpVsOneRank);
    std::printf("%s vocab %lld TP=%lld: max |logit diff| vs TP=1 %.2e\n", c.fixture, static_cast<long long>(c.vocab),
                static_cast<long long>(c.size), double(diff));
  }
}

}  // namespace
}  // namespace troupe
