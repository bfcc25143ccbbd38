// MLA decode in the absorbed form (kernels/mla_decode.hpp's references, which CpuBackend runs for
// sequences with one new token) equals the expanded form (kv_b_proj applied to every cached
// latent, then attention with k = [k_nope | k_pe], as transformers computes it) on random data, at
// the fixtures' dims and R1's. A mixed batch: decode contexts 1, block_size - 1 and one past two
// blocks, plus a prefill chunk (which CpuBackend keeps expanded).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "backends/cpu_backend.hpp"
#include "kernels/mla_decode.hpp"
#include "kernels/mla_prefill.hpp"
#include "runtime/attention_metadata.hpp"

namespace troupe {
namespace {

struct MlaDims {
  int64_t num_heads, kv_lora, rope, nope, v_dim;
};

// A tensor of uniform values with the given standard deviation, filled in place (R1's kv_b_proj
// has 16M: normal samples and a copy would cost most of the test's time).
Tensor random_tensor(std::vector<int64_t> shape, float stddev, std::mt19937& rng) {
  Tensor t = Tensor::empty(DType::f32, std::move(shape));
  const float half_width = stddev * std::sqrt(3.0f), step = 2.0f * half_width / 4294967296.0f;
  float* p = t.data<float>();
  uint64_t state = (uint64_t(rng()) << 32) | rng();
  for (int64_t i = 0, count = t.numel(); i < count; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;  // an LCG: 16M values in ms
    p[i] = float(uint32_t(state >> 32)) * step - half_width;
  }
  return t;
}

// fp32 on both sides: the two forms sum the same products in a different order (q_nope . (W_UK
// latent) against (q_nope W_UK) . latent, and likewise for v), with O(1) scores and outputs: a few
// 1e-6 measured; 5e-5 fails any indexing or formula slip.
constexpr double kAbsorbedTolerance = 5e-5;

double max_absorbed_vs_expanded(const MlaDims& d, std::mt19937& rng) {
  constexpr int64_t kBlockSize = 16;
  // {context_len, num_new}: decode at 1, block_size - 1 and 37; a prefill chunk of 3 at 21.
  const std::vector<std::pair<int32_t, int32_t>> seqs = {{1, 1}, {15, 1}, {21, 3}, {37, 1}};
  const int64_t entry = d.kv_lora + d.rope, qk = d.nope + d.rope, per_head = d.nope + d.v_dim;
  int64_t num_blocks = 0;
  for (auto [ctx, num_new] : seqs) num_blocks += (ctx + kBlockSize - 1) / kBlockSize;
  std::vector<std::vector<int32_t>> tables;
  ForwardBatch batch;
  int32_t next_block = int32_t(num_blocks) - 1;  // blocks handed out backwards
  for (auto [ctx, num_new] : seqs) {
    std::vector<int32_t> table;
    for (int64_t b = 0; b < (ctx + kBlockSize - 1) / kBlockSize; ++b) table.push_back(next_block--);
    tables.push_back(table);
    for (int32_t i = 0; i < num_new; ++i) {
      batch.token_ids.push_back(0);
      batch.positions.push_back(ctx - num_new + i);
    }
  }
  for (size_t s = 0; s < seqs.size(); ++s) batch.seqs.push_back({seqs[s].second, seqs[s].first, &tables[s], true});
  auto meta = build_attention_metadata(batch, kBlockSize, num_blocks);
  EXPECT_TRUE(meta.ok()) << meta.error().message;
  const int64_t n = meta->num_tokens;

  // Real layers' scales: RMS-normed latents ~ N(0, 1), weights ~ N(0, 1 / kv_lora), so k_nope and
  // v ~ N(0, 1) and the scores O(1).
  Tensor cache = random_tensor({num_blocks, kBlockSize, 1, entry}, 1.0f, rng);
  Tensor weight = random_tensor({d.num_heads * per_head, d.kv_lora}, 1.0f / std::sqrt(float(d.kv_lora)), rng);
  Tensor q = random_tensor({n, d.num_heads, qk}, 1.0f, rng);
  const float scale = 1.0f / std::sqrt(float(qk));
  CpuBackend backend(2);
  Tensor out = Tensor::empty(DType::f32, {n, d.num_heads, d.v_dim});
  backend.mla_paged_attention(q, cache, weight, meta.value(), scale, out);

  // The expanded form per sequence: gather, kv = latent @ kv_b^T, attention over [k_nope | k_pe].
  double worst = 0.0;
  int64_t begin = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const auto [ctx, num_new] = seqs[s];
    Tensor latent = Tensor::empty(DType::f32, {ctx, d.kv_lora});
    std::vector<float> k_pe(size_t(ctx * d.rope));
    kernels::mla_gather_latent_ref(cache.data<float>(), tables[s].data(), kBlockSize, ctx, d.kv_lora, d.rope,
                                   latent.data<float>(), k_pe.data());
    Tensor kv = Tensor::empty(DType::f32, {ctx, d.num_heads * per_head});
    backend.linear(latent, weight, Tensor(), kv);
    std::vector<float> expected(size_t(num_new * d.num_heads * d.v_dim));
    kernels::mla_prefill_attention_ref(q.data<float>() + begin * d.num_heads * qk, kv.data<float>(), k_pe.data(),
                                       num_new, ctx, d.num_heads, d.nope, d.rope, d.v_dim, scale, expected.data());
    const float* actual = out.data<float>() + begin * d.num_heads * d.v_dim;
    for (size_t i = 0; i < expected.size(); ++i) worst = std::max(worst, double(std::fabs(actual[i] - expected[i])));
    begin += num_new;
  }
  return worst;
}

TEST(MlaAbsorbed, DecodeEqualsExpandedAtFixtureAndR1Dims) {
  std::mt19937 rng(15);
  const MlaDims dims[] = {
      {4, 32, 8, 16, 16},      // deepseek-v3-tiny, -lite-tiny
      {4, 136, 16, 32, 32},    // deepseek-v3-fp8-tiny
      {128, 512, 64, 128, 128},  // R1
  };
  for (const MlaDims& d : dims) {
    const double worst = max_absorbed_vs_expanded(d, rng);
    std::printf("H %lld kv_lora %lld: max |absorbed - expanded| %.2e\n", (long long)d.num_heads, (long long)d.kv_lora,
                worst);
    EXPECT_LE(worst, kAbsorbedTolerance) << "H " << d.num_heads << " kv_lora " << d.kv_lora;
  }
}

}  // namespace
}  // namespace troupe
