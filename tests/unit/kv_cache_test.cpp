// The paged KV cache: spec sizes, allocation errors, slot layout, and batch metadata checks.
#include <gtest/gtest.h>

#include "runtime/attention_metadata.hpp"
#include "backends/cpu_backend.hpp"
#include "runtime/kv_cache.hpp"

namespace troupe {
namespace {

KvCacheSpec llama_spec(int64_t num_blocks) {
  return KvCacheSpec{4, num_blocks, 16, DType::f32, {{"k", 2, 64}, {"v", 2, 64}}};
}

TEST(KvCache, SpecSizesAndBlocksForBytes) {
  const KvCacheSpec spec = llama_spec(10);
  EXPECT_EQ(spec.bytes_per_token_per_layer(), 2 * 2 * 64 * 4);
  EXPECT_EQ(spec.total_bytes(), 2 * 2 * 64 * 4 * 4 * 10 * 16);
  EXPECT_EQ(KvCacheSpec::blocks_for_bytes(spec, spec.total_bytes()), 10);
  EXPECT_EQ(KvCacheSpec::blocks_for_bytes(spec, spec.total_bytes() - 1), 9);
  // An MLA-style latent cache is one component of one "head".
  KvCacheSpec latent{2, 8, 16, DType::f32, {{"latent", 1, 576}}};
  EXPECT_EQ(latent.bytes_per_token_per_layer(), 576 * 4);
}

TEST(KvCache, CreateAllocatesEveryLayerAndComponent) {
  auto cache = KvCache::create(llama_spec(5));
  ASSERT_TRUE(cache.ok());
  EXPECT_EQ(cache->num_layers(), 4);
  EXPECT_EQ(cache->component_index("v"), 1);
  EXPECT_EQ(cache->component_index("latent"), -1);
  for (int64_t layer = 0; layer < 4; ++layer) {
    for (int64_t c = 0; c < 2; ++c) {
      EXPECT_EQ(cache->component(layer, c).shape(), (std::vector<int64_t>{5, 16, 2, 64}));
      EXPECT_EQ(cache->component(layer, c).data<float>()[0], 0.0f);
    }
  }
  EXPECT_NE(cache->component(0, 0).raw(), cache->component(1, 0).raw());
}

TEST(KvCache, RejectsEmptySpecs) {
  EXPECT_FALSE(KvCache::create(llama_spec(0)).ok());
  KvCacheSpec no_components = llama_spec(3);
  no_components.components.clear();
  EXPECT_FALSE(KvCache::create(no_components).ok());
  KvCacheSpec empty_head = llama_spec(3);
  empty_head.components[1].head_dim = 0;
  auto r = KvCache::create(empty_head);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("'v'"), std::string::npos);
}

// write_kv puts token p of a sequence at [block_table[p / bs], p % bs] of the documented layout.
TEST(KvCache, SlotLayoutFollowsTheBlockTable) {
  CpuBackend backend(1);
  KvCacheSpec spec{1, 6, 4, DType::f32, {{"k", 2, 3}}};
  auto cache = backend.create_kv_cache(spec);
  ASSERT_TRUE(cache.ok());
  const std::vector<int32_t> table = {5, 1, 3};
  ForwardBatch batch;
  for (int32_t p = 0; p < 10; ++p) {
    batch.positions.push_back(p);
    batch.token_ids.push_back(p);
  }
  batch.seqs.push_back({10, 10, &table, true});
  auto meta = build_attention_metadata(batch, 4, 6);
  ASSERT_TRUE(meta.ok()) << meta.error().message;
  std::vector<float> x(10 * 2 * 3);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i);
  backend.write_kv(cache->component(0, 0), Tensor::from_f32(x, {10, 2, 3}), meta->slot_mapping);
  const float* k = cache->component(0, 0).data<float>();
  for (int32_t p = 0; p < 10; ++p) {
    const int64_t block = table[size_t(p / 4)], slot = p % 4;
    for (int64_t e = 0; e < 6; ++e) EXPECT_EQ(k[((block * 4 + slot) * 2) * 3 + e], x[size_t(p * 6 + e)]) << p;
  }
  EXPECT_EQ(meta->logits_rows, (std::vector<int32_t>{9}));
  EXPECT_EQ(meta->max_context_len, 10);
  EXPECT_EQ(meta->max_blocks_per_seq, 3);
}

TEST(KvCache, MetadataRejectsInconsistentBatches) {
  const std::vector<int32_t> table = {0, 1};
  auto make = [&](int32_t num_new, int32_t context_len, int32_t num_tokens) {
    ForwardBatch b;
    for (int32_t i = 0; i < num_tokens; ++i) {
      b.positions.push_back(context_len - num_new + i);
      b.token_ids.push_back(1);
    }
    b.seqs.push_back({num_new, context_len, &table, true});
    return b;
  };
  EXPECT_TRUE(build_attention_metadata(make(3, 5, 3), 4, 2).ok());
  EXPECT_FALSE(build_attention_metadata(make(3, 5, 4), 4, 2).ok());  // extra token
  EXPECT_FALSE(build_attention_metadata(make(3, 2, 3), 4, 2).ok());  // context < new
  EXPECT_FALSE(build_attention_metadata(make(3, 9, 3), 4, 2).ok());  // table too short
  EXPECT_FALSE(build_attention_metadata(make(3, 5, 3), 4, 1).ok());  // block 1 >= num_blocks
  ForwardBatch no_table = make(3, 5, 3);
  no_table.seqs[0].block_table = nullptr;
  EXPECT_FALSE(build_attention_metadata(no_table, 4, 2).ok());
  EXPECT_FALSE(build_attention_metadata(ForwardBatch{}, 4, 2).ok());
}

}  // namespace
}  // namespace troupe
