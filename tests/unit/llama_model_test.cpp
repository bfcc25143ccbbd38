// The Llama/Qwen2 decoder: a batch mixing prefill, chunked prefill and decode equals each sequence
// run alone; pipeline stages compose to the whole model and read only their tensors; bad input is
// an error naming the problem.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "backends/cpu_backend.hpp"
#include "models/llama_model.hpp"
#include "tests/unit/tiny_model_support.hpp"

namespace troupe {
namespace {

using testing::map_loader;
using testing::tiny_config;
using testing::tiny_weights;

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& id : ids) id = int32_t(rng() % uint32_t(vocab));
  return ids;
}

// One sequence's step: tokens [begin, end) of `ids`, with tokens [0, begin) already cached.
void add_step(ForwardBatch& batch, const std::vector<int32_t>& ids, int32_t begin, int32_t end,
              const std::vector<int32_t>* table, bool needs_logits = true) {
  for (int32_t p = begin; p < end; ++p) {
    batch.token_ids.push_back(ids[size_t(p)]);
    batch.positions.push_back(p);
  }
  batch.seqs.push_back({end - begin, end, table, needs_logits});
}

float max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  float diff = 0.0f;
  for (int64_t i = 0; i < std::min(a.numel(), b.numel()); ++i) {
    diff = std::max(diff, std::abs(a.data<float>()[i] - b.data<float>()[i]));
  }
  return diff;
}

class LlamaModelBatch : public ::testing::TestWithParam<bool> {};

TEST_P(LlamaModelBatch, MixedBatchMatchesEachSequenceAlone) {
  const ModelConfig config = tiny_config(GetParam());
  const auto weights = tiny_weights(config, 11);
  CpuBackend backend(3);
  auto loaded = LlamaModel::load(config, backend, {}, map_loader(weights, nullptr));
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  LlamaModel& model = *loaded.value();
  const int64_t block_size = 4, num_blocks = 64;

  // A: fresh 11-token prefill; B: 5 cached, decodes its 6th; C: 9 cached, a 4-token chunk.
  struct Seq {
    std::vector<int32_t> ids;
    int32_t cached;
    std::vector<int32_t> table;  // non-contiguous, interleaved with the others
  };
  std::vector<Seq> seqs = {{random_ids(11, config.vocab_size, 1), 0, {13, 2, 40}},
                           {random_ids(6, config.vocab_size, 2), 5, {7, 31}},
                           {random_ids(13, config.vocab_size, 3), 9, {50, 1, 22, 9}}};

  // Each alone, in its own cache with contiguous blocks: history first, then the step.
  std::vector<Tensor> alone_logits;
  for (const Seq& s : seqs) {
    auto cache = backend.create_kv_cache(model.kv_cache_spec(num_blocks, block_size));
    ASSERT_TRUE(cache.ok());
    std::vector<int32_t> table = {0, 1, 2, 3};
    if (s.cached > 0) {
      ForwardBatch history;
      add_step(history, s.ids, 0, s.cached, &table);
      ASSERT_TRUE(model.forward(history, cache.value(), LogitsMode::last_token).ok());
    }
    ForwardBatch step;
    add_step(step, s.ids, s.cached, int32_t(s.ids.size()), &table);
    auto logits = model.forward(step, cache.value(), LogitsMode::all_tokens);
    ASSERT_TRUE(logits.ok()) << logits.error().message;
    alone_logits.push_back(logits.value());
  }

  // Together in one shared cache: histories of B and C as one batch, then the mixed step.
  auto cache = backend.create_kv_cache(model.kv_cache_spec(num_blocks, block_size));
  ASSERT_TRUE(cache.ok());
  ForwardBatch history;
  add_step(history, seqs[1].ids, 0, seqs[1].cached, &seqs[1].table);
  add_step(history, seqs[2].ids, 0, seqs[2].cached, &seqs[2].table, false);
  auto history_logits = model.forward(history, cache.value(), LogitsMode::last_token);
  ASSERT_TRUE(history_logits.ok()) << history_logits.error().message;
  EXPECT_EQ(history_logits->shape(), (std::vector<int64_t>{1, config.vocab_size}));  // only B wants logits

  ForwardBatch step;
  for (const Seq& s : seqs) add_step(step, s.ids, s.cached, int32_t(s.ids.size()), &s.table);
  auto all = model.forward(step, cache.value(), LogitsMode::all_tokens);
  ASSERT_TRUE(all.ok()) << all.error().message;
  int64_t row = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int64_t n = alone_logits[i].size(0);
    EXPECT_LE(max_abs_diff(all->rows(row, n), alone_logits[i]), 1e-4f) << "sequence " << i;
    row += n;
  }
  EXPECT_EQ(row, all->size(0));

  // last_token mode on a fresh cache gives exactly the last rows.
  auto cache2 = backend.create_kv_cache(model.kv_cache_spec(num_blocks, block_size));
  ASSERT_TRUE(cache2.ok());
  ASSERT_TRUE(model.forward(history, cache2.value(), LogitsMode::last_token).ok());
  auto last = model.forward(step, cache2.value(), LogitsMode::last_token);
  ASSERT_TRUE(last.ok());
  ASSERT_EQ(last->size(0), 3);
  for (size_t i = 0; i < seqs.size(); ++i) {
    EXPECT_LE(max_abs_diff(last->rows(int64_t(i), 1), alone_logits[i].rows(alone_logits[i].size(0) - 1, 1)), 1e-4f);
  }
}

INSTANTIATE_TEST_SUITE_P(LlamaModelArch, LlamaModelBatch, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "qwen2" : "llama"; });

TEST(LlamaModel, PipelineStagesComposeToTheWholeModel) {
  for (bool qwen2 : {false, true}) {
    const ModelConfig config = tiny_config(qwen2);
    const auto weights = tiny_weights(config, 5);
    CpuBackend backend(2);
    std::vector<std::string> first_names, last_names;
    auto whole = LlamaModel::load(config, backend, {}, map_loader(weights, nullptr));
    auto first = LlamaModel::load(config, backend, {0, 1}, map_loader(weights, &first_names));
    auto last = LlamaModel::load(config, backend, {1, -1}, map_loader(weights, &last_names));
    ASSERT_TRUE(whole.ok() && first.ok() && last.ok());
    EXPECT_TRUE(first.value()->is_first_stage() && !first.value()->is_last_stage());
    EXPECT_TRUE(!last.value()->is_first_stage() && last.value()->is_last_stage());
    EXPECT_EQ(last.value()->layer_range().end, config.num_hidden_layers);

    // Each stage reads only its own tensors.
    for (const auto& name : first_names) {
      EXPECT_TRUE(name.rfind("model.layers.0.", 0) == 0 || name == "model.embed_tokens.weight") << name;
    }
    for (const auto& name : last_names) {
      const bool tied_embedding = qwen2 && name == "model.embed_tokens.weight";
      EXPECT_TRUE(name.rfind("model.layers.1.", 0) == 0 || name.rfind("model.layers.2.", 0) == 0 ||
                  name == "model.norm.weight" || name == "lm_head.weight" || tied_embedding)
          << name;
    }
    EXPECT_EQ(std::count(last_names.begin(), last_names.end(), "model.embed_tokens.weight"), qwen2 ? 1 : 0);

    const auto ids = random_ids(9, config.vocab_size, 3);
    std::vector<int32_t> table = {3, 0, 5};
    auto run_whole = backend.create_kv_cache(whole.value()->kv_cache_spec(8, 4));
    auto run_first = backend.create_kv_cache(first.value()->kv_cache_spec(8, 4));
    auto run_last = backend.create_kv_cache(last.value()->kv_cache_spec(8, 4));
    ASSERT_TRUE(run_whole.ok() && run_first.ok() && run_last.ok());
    EXPECT_EQ(run_first->num_layers(), 1);
    EXPECT_EQ(run_last->num_layers(), 2);
    for (auto [begin, end] : {std::pair{0, 8}, std::pair{8, 9}}) {  // a prefill, then a decode
      ForwardBatch batch;
      add_step(batch, ids, begin, end, &table);
      auto expected = whole.value()->forward(batch, run_whole.value(), LogitsMode::all_tokens);
      auto hidden = first.value()->forward(batch, run_first.value(), LogitsMode::all_tokens);
      ASSERT_TRUE(expected.ok() && hidden.ok());
      EXPECT_EQ(hidden->shape(), (std::vector<int64_t>{end - begin, config.hidden_size}));
      batch.hidden_states = hidden.value();
      auto actual = last.value()->forward(batch, run_last.value(), LogitsMode::all_tokens);
      ASSERT_TRUE(actual.ok()) << actual.error().message;
      EXPECT_LE(max_abs_diff(actual.value(), expected.value()), 1e-5f);
    }
  }
}

TEST(LlamaModel, LoadErrorsNameTheTensorOrField) {
  ModelConfig config = tiny_config(false);
  auto weights = tiny_weights(config, 1);
  CpuBackend backend(1);
  weights.erase("model.layers.2.mlp.up_proj.weight");
  auto missing = LlamaModel::load(config, backend, {}, map_loader(weights, nullptr));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("model.layers.2.mlp.up_proj.weight"), std::string::npos);
  // The stage without layer 2 does not need it.
  EXPECT_TRUE(LlamaModel::load(config, backend, {0, 2}, map_loader(weights, nullptr)).ok());

  auto bad_range = LlamaModel::load(config, backend, {2, 7}, map_loader(weights, nullptr));
  ASSERT_FALSE(bad_range.ok());
  EXPECT_EQ(bad_range.error().code, ErrorCode::invalid_argument);
  config.architecture = "MambaForCausalLM";
  auto bad_arch = LlamaModel::load(config, backend, {}, map_loader(weights, nullptr));
  ASSERT_FALSE(bad_arch.ok());
  EXPECT_EQ(bad_arch.error().code, ErrorCode::unsupported);
}

TEST(LlamaModel, BadBatchesAreErrors) {
  const ModelConfig config = tiny_config(true);
  const auto weights = tiny_weights(config, 2);
  CpuBackend backend(1);
  auto model = LlamaModel::load(config, backend, {}, map_loader(weights, nullptr));
  ASSERT_TRUE(model.ok());
  auto cache = backend.create_kv_cache(model.value()->kv_cache_spec(4, 4));
  ASSERT_TRUE(cache.ok());
  std::vector<int32_t> table = {1, 2};
  const std::vector<int32_t> ids = {1, 2, 3, 4, 5, 6};

  ForwardBatch out_of_vocab;
  add_step(out_of_vocab, {1, int32_t(config.vocab_size)}, 0, 2, &table);
  auto r1 = model.value()->forward(out_of_vocab, cache.value(), LogitsMode::last_token);
  ASSERT_FALSE(r1.ok());
  EXPECT_NE(r1.error().message.find("vocabulary"), std::string::npos);

  std::vector<int32_t> short_table = {1};
  ForwardBatch too_long;
  add_step(too_long, ids, 0, 6, &short_table);
  auto r2 = model.value()->forward(too_long, cache.value(), LogitsMode::last_token);
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.error().message.find("block table"), std::string::npos);

  std::vector<int32_t> bad_block = {1, 9};
  ForwardBatch outside;
  add_step(outside, ids, 0, 6, &bad_block);
  auto r3 = model.value()->forward(outside, cache.value(), LogitsMode::last_token);
  ASSERT_FALSE(r3.ok());
  EXPECT_NE(r3.error().message.find("block id 9"), std::string::npos);

  ForwardBatch wrong_position;
  add_step(wrong_position, ids, 0, 3, &table);
  wrong_position.positions[1] = 5;
  auto r4 = model.value()->forward(wrong_position, cache.value(), LogitsMode::last_token);
  ASSERT_FALSE(r4.ok());
  EXPECT_NE(r4.error().message.find("position"), std::string::npos);

  auto other_cache = backend.create_kv_cache(KvCacheSpec{1, 4, 4, DType::f32, {{"latent", 1, 16}}});
  ASSERT_TRUE(other_cache.ok());
  ForwardBatch fine;
  add_step(fine, ids, 0, 3, &table);
  EXPECT_FALSE(model.value()->forward(fine, other_cache.value(), LogitsMode::last_token).ok());
  EXPECT_TRUE(model.value()->forward(fine, cache.value(), LogitsMode::last_token).ok());
}

}  // namespace
}  // namespace troupe
