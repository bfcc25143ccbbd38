// GraphedModel on the CPU: a backend that claims step graphs (and runs every op eagerly) shows
// that padded decode steps give the wrapped model's logits, which steps get a graph, and that a
// failed recording falls back to an eager step.
#include "backends/graphed_model.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "runtime/attention_metadata.hpp"
#include "models/model_loader.hpp"
#include "tests/unit/graph_claiming_backend.hpp"

namespace troupe {
namespace {

const std::string kTinyModel = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/llama-tiny";


struct Sequences {
  std::vector<std::vector<int32_t>> tables;
  std::vector<int32_t> context;
};

// Prefill of `lens[s]` tokens per sequence, sequence s in blocks s * per_seq ... (s + 1) * per_seq - 1.
ForwardBatch prefill(Sequences& seqs, const std::vector<int32_t>& lens, int32_t per_seq = 8) {
  ForwardBatch batch;
  seqs.tables.assign(lens.size(), {});
  seqs.context = lens;
  for (size_t s = 0; s < lens.size(); ++s) {
    for (int32_t b = 0; b < per_seq; ++b) seqs.tables[s].push_back(int32_t(s) * per_seq + b);
    for (int32_t i = 0; i < lens[s]; ++i) {
      batch.token_ids.push_back(int32_t(7 + 13 * s + i) % 200);
      batch.positions.push_back(i);
    }
    batch.seqs.push_back({lens[s], lens[s], &seqs.tables[s], true});
  }
  return batch;
}

ForwardBatch decode(Sequences& seqs, int32_t token) {
  ForwardBatch batch;
  for (size_t s = 0; s < seqs.context.size(); ++s) {
    batch.token_ids.push_back(int32_t(token + 31 * s) % 200);
    batch.positions.push_back(seqs.context[s]);
    ++seqs.context[s];
    batch.seqs.push_back({1, seqs.context[s], &seqs.tables[s], true});
  }
  return batch;
}

double max_abs_diff(Backend& backend, const Tensor& a, const Tensor& b) {
  const std::vector<float> x = backend.to_host(a).to_f32_vector(), y = backend.to_host(b).to_f32_vector();
  if (x.size() != y.size()) return INFINITY;
  double d = 0;
  for (size_t i = 0; i < x.size(); ++i) d = std::max(d, double(std::fabs(x[i] - y[i])));
  return d;
}

class GraphedModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto plain = load_model(kTinyModel, backend_);
    auto inner = load_model(kTinyModel, backend_);
    ASSERT_TRUE(plain.ok() && inner.ok());
    plain_ = std::move(plain.value());
    StepGraphOptions options;
    options.max_batch = 8;
    options.max_model_len = 100;
    graphed_ = std::make_unique<GraphedModel>(std::move(inner.value()), backend_, options);
    auto a = backend_.create_kv_cache(plain_->kv_cache_spec(kBlocks, 16));
    auto b = backend_.create_kv_cache(graphed_->kv_cache_spec(kBlocks, 16));
    ASSERT_TRUE(a.ok() && b.ok());
    plain_cache_ = std::make_unique<KvCache>(std::move(a.value()));
    graphed_cache_ = std::make_unique<KvCache>(std::move(b.value()));
  }

  // Runs `batch` on both models and returns the largest logit difference.
  double step_difference(const ForwardBatch& batch) {
    auto want = plain_->forward(batch, *plain_cache_);
    auto got = graphed_->forward(batch, *graphed_cache_);
    EXPECT_TRUE(want.ok() && got.ok());
    if (!want.ok() || !got.ok()) return INFINITY;
    EXPECT_EQ(got->shape(), want->shape());
    return max_abs_diff(backend_, want.value(), got.value());
  }

  static constexpr int64_t kBlocks = 40;
  GraphClaimingBackend backend_;
  std::unique_ptr<Model> plain_;
  std::unique_ptr<GraphedModel> graphed_;
  std::unique_ptr<KvCache> plain_cache_, graphed_cache_;
};

TEST(GraphedModelBuckets, FollowVllmsCaptureSizesUpToTheCap) {
  EXPECT_EQ(GraphedModel::buckets(256),
            (std::vector<int64_t>{1, 2, 4, 8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256}));
  EXPECT_EQ(GraphedModel::buckets(20), (std::vector<int64_t>{1, 2, 4, 8, 16}));
  EXPECT_EQ(GraphedModel::buckets(3), (std::vector<int64_t>{1, 2}));
}

TEST_F(GraphedModelTest, TheCacheHasOneScratchBlockMore) {
  EXPECT_EQ(graphed_->kv_cache_spec(kBlocks, 16).num_blocks, kBlocks + 1);
  EXPECT_EQ(graphed_cache_->num_blocks(), kBlocks + 1);
}

TEST_F(GraphedModelTest, PaddedDecodeStepsGiveTheWrappedModelsLogits) {
  Sequences a, b;
  EXPECT_LE(step_difference(prefill(a, {5, 17, 9})), 0.0);  // eager: a prefill
  prefill(b, {5, 17, 9});
  EXPECT_TRUE(backend_.begins.empty());
  for (int step = 0; step < 4; ++step) {
    const ForwardBatch batch = decode(a, 40 + step);
    decode(b, 40 + step);
    EXPECT_LE(step_difference(batch), 1e-5) << "step " << step;  // 3 rows padded to 4
  }
  EXPECT_EQ(backend_.begins, (std::vector<int64_t>{4, 4, 4, 4}));
  EXPECT_EQ(graphed_->num_recorded(), 1);
  EXPECT_EQ(graphed_->num_replayed(), 3);
  // The sequences' K/V are what the wrapped model wrote: padding rows went to the scratch block.
  for (int64_t layer = 0; layer < plain_cache_->num_layers(); ++layer) {
    for (int64_t c = 0; c < 2; ++c) {
      const Tensor want = plain_cache_->component(layer, c);
      const Tensor got = graphed_cache_->component(layer, c).rows(0, kBlocks);
      EXPECT_LE(max_abs_diff(backend_, want, got), 1e-5) << "layer " << layer;
    }
  }
}

TEST_F(GraphedModelTest, AnotherCacheDropsTheRecordingsAndRecordsAgain) {
  Sequences a;
  step_difference(prefill(a, {5}));
  ASSERT_TRUE(graphed_->forward(decode(a, 1), *graphed_cache_).ok());
  ASSERT_TRUE(graphed_->forward(decode(a, 2), *graphed_cache_).ok());
  EXPECT_EQ(graphed_->num_replayed(), 1);
  EXPECT_EQ(backend_.drops, 0);
  auto other = backend_.create_kv_cache(graphed_->kv_cache_spec(kBlocks, 16));
  ASSERT_TRUE(other.ok());
  Sequences b;
  ASSERT_TRUE(graphed_->forward(prefill(b, {5}), other.value()).ok());
  auto out = graphed_->forward(decode(b, 1), other.value());
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(backend_.drops, 1);
  EXPECT_EQ(graphed_->num_recorded(), 1);
  EXPECT_EQ(graphed_->num_replayed(), 1) << "recorded again, not replayed with the old cache";
}

TEST_F(GraphedModelTest, OtherStepsRunTheWrappedModelAsTheyAre) {
  Sequences a;
  step_difference(prefill(a, {5, 6}));
  ForwardBatch mixed = decode(a, 3);
  mixed.seqs[1].needs_logits = false;  // a step that samples only some rows
  auto out = graphed_->forward(mixed, *graphed_cache_);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->size(0), 1);
  auto all = graphed_->forward(decode(a, 4), *graphed_cache_, LogitsMode::all_tokens);
  ASSERT_TRUE(all.ok());
  Sequences big;
  auto nine = graphed_->forward(prefill(big, {1, 1, 1, 1, 1, 1, 1, 1, 1}, 4), *graphed_cache_);  // one-token prefills
  ASSERT_TRUE(nine.ok());
  EXPECT_TRUE(backend_.begins.empty()) << "9 rows exceed the largest bucket (8)";
}

TEST_F(GraphedModelTest, AFailedRecordingFallsBackToAnEagerStepAndDropsTheBucket) {
  Sequences a, b;
  step_difference(prefill(a, {4, 8}));
  prefill(b, {4, 8});
  backend_.fail_ends = 1;
  const ForwardBatch first = decode(a, 9);
  decode(b, 9);
  EXPECT_LE(step_difference(first), 1e-5);
  EXPECT_EQ(graphed_->num_dropped(), 1);
  const ForwardBatch second = decode(a, 10);
  decode(b, 10);
  EXPECT_LE(step_difference(second), 1e-5);
  EXPECT_EQ(backend_.begins, (std::vector<int64_t>{2})) << "the dropped bucket is not tried again";
}

TEST_F(GraphedModelTest, ContextsPastMaxModelLenAndBadTokensAreNotRecorded) {
  Sequences a;
  step_difference(prefill(a, {100}));
  auto past = graphed_->forward(decode(a, 1), *graphed_cache_);  // context 101 > max_model_len 100
  ASSERT_TRUE(past.ok());
  EXPECT_TRUE(backend_.begins.empty());
  Sequences c;
  step_difference(prefill(c, {3}));
  ForwardBatch bad = decode(c, 1);
  bad.token_ids[0] = 1 << 30;
  auto refused = graphed_->forward(bad, *graphed_cache_);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("outside the vocabulary"), std::string::npos) << refused.error().message;
  EXPECT_EQ(graphed_->num_recorded(), 0);
}

TEST(BlockTableWidth, PadsRowsToTheWidthAndRefusesContextsThatDoNotFit) {
  std::vector<int32_t> table = {3, 4};
  ForwardBatch batch;
  batch.token_ids = {1};
  batch.positions = {20};
  batch.seqs.push_back({1, 21, &table, true});
  batch.block_table_width = 5;
  auto meta = build_attention_metadata(batch, 16, 10);
  ASSERT_TRUE(meta.ok());
  EXPECT_EQ(meta->max_blocks_per_seq, 5);
  const int32_t* row = meta->block_tables.data<int32_t>();
  EXPECT_EQ(std::vector<int32_t>(row, row + 5), (std::vector<int32_t>{3, 4, -1, -1, -1}));
  batch.block_table_width = 1;
  auto refused = build_attention_metadata(batch, 16, 10);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("needs 2 blocks"), std::string::npos) << refused.error().message;
}

}  // namespace
}  // namespace troupe
