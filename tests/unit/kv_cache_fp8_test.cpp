// The fp8 KV cache (--kv-cache-dtype fp8, runtime/kv_cache.hpp): sizes, per-tensor scales, the CPU
// backend's write and read against e4m3's rounding, the checkpoint scales a Llama picks up, and
// the refusals (DeepSeek's MLA cache, a bad scale).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "backends/backend_factory.hpp"
#include "backends/cpu_backend.hpp"
#include "kernels/host_fp8.hpp"
#include "kernels/paged_attention.hpp"
#include "models/kv_cache_scales.hpp"
#include "models/llama_model.hpp"
#include "models/model_loader.hpp"
#include "runtime/attention_metadata.hpp"
#include "runtime/config.hpp"
#include "runtime/kv_cache.hpp"
#include "tests/unit/tiny_model_support.hpp"

namespace troupe {
namespace {

// e4m3 keeps 3 mantissa bits: nearest rounding is within half an ulp, 2^-4 of the value, for
// magnitudes in the normal range [2^-6, 448].
constexpr float kE4m3Relative = 1.0f / 16.0f;

float read_back(uint8_t byte, float scale) { return kernels::host_e4m3_to_f32(byte) * scale; }

TEST(KvCacheFp8, SpecCountsOneBytePerElement) {
  KvCacheSpec fp8{4, 10, 16, DType::f8_e4m3, {{"k", 2, 64}, {"v", 2, 64}}};
  KvCacheSpec bf16 = fp8;
  bf16.dtype = DType::bf16;
  EXPECT_EQ(fp8.bytes_per_token_per_layer(), 2 * 2 * 64);
  EXPECT_EQ(2 * fp8.bytes_per_token_per_layer(), bf16.bytes_per_token_per_layer());
  // The same memory holds twice bf16's blocks (the KV sizing log line's token count).
  EXPECT_EQ(KvCacheSpec::blocks_for_bytes(fp8, bf16.total_bytes()), 2 * bf16.num_blocks);
}

TEST(KvCacheFp8, TensorsCarryTheirLayersScales) {
  KvCacheSpec spec{2, 3, 4, DType::f8_e4m3, {{"k", 1, 8}, {"v", 1, 8}}, {0.5f, 2.0f, 0.25f, 4.0f}};
  auto cache = KvCache::create(spec);
  ASSERT_TRUE(cache.ok()) << cache.error().message;
  EXPECT_EQ(cache->component(0, 0).tensor_scale(), 0.5f);
  EXPECT_EQ(cache->component(0, 1).tensor_scale(), 2.0f);
  EXPECT_EQ(cache->component(1, 0).tensor_scale(), 0.25f);
  EXPECT_EQ(cache->component(1, 1).tensor_scale(), 4.0f);
  EXPECT_EQ(cache->component(1, 1).reshape({-1}).tensor_scale(), 4.0f);  // views keep it
  EXPECT_EQ(cache->component(1, 1).dtype(), DType::f8_e4m3);
  spec.scales = {};  // no scales: every one is 1
  EXPECT_EQ(KvCache::create(spec)->component(1, 1).tensor_scale(), 1.0f);
  spec.scales = {1.0f, 1.0f};  // not one per (layer, component)
  EXPECT_FALSE(KvCache::create(spec).ok());
  spec.scales = {1.0f, 1.0f, 0.0f, 1.0f};
  EXPECT_FALSE(KvCache::create(spec).ok());
}

// write_kv stores e4m3(x / scale); read back as e4m3 * scale it is within 2^-4 of x relatively
// (normal range), saturates at +-448 * scale (never NaN, inf too), and zero stays zero.
TEST(KvCacheFp8, CpuWriteReadRoundTripWithinE4m3Rounding) {
  CpuBackend backend(1);
  ASSERT_TRUE(backend.set_fp8_kv_cache(true).ok());
  ASSERT_EQ(backend.kv_cache_dtype(), DType::f8_e4m3);
  const float scale = 0.05f;  // values up to 448 * 0.05 = 22.4 fit
  const int64_t n = 64, entry = 2 * 16;
  KvCacheSpec spec{1, 8, 8, DType::f8_e4m3, {{"k", 2, 16}}, {scale}};
  auto cache = backend.create_kv_cache(spec);
  ASSERT_TRUE(cache.ok()) << cache.error().message;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<float> x(static_cast<size_t>(n * entry));
  for (float& v : x) v = normal(rng);
  x[0] = 1e6f;                                      // saturates
  x[1] = -std::numeric_limits<float>::infinity();  // saturates, not NaN
  x[2] = 0.0f;
  x[3] = 448.0f * scale;  // the largest finite value exactly
  std::vector<int32_t> slots(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) slots[size_t(t)] = int32_t((t * 5) % 64);  // a permutation of the 64 slots
  backend.write_kv(cache->component(0, 0), Tensor::from_f32(x, {n, 2, 16}), Tensor::from_i32(slots, {n}));
  const uint8_t* bytes = cache->component(0, 0).data<uint8_t>();
  int64_t checked = 0;
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < entry; ++i) {
      const float want = x[size_t(t * entry + i)];
      const float got = read_back(bytes[slots[size_t(t)] * entry + i], scale);
      ASSERT_FALSE(std::isnan(got)) << t << ", " << i;
      if (std::fabs(want) >= 448.0f * scale) {
        EXPECT_EQ(got, std::copysign(448.0f * scale, want)) << t << ", " << i;
      } else if (std::fabs(want) >= std::ldexp(scale, -6)) {
        EXPECT_LE(std::fabs(got - want), kE4m3Relative * std::fabs(want)) << want << " read back as " << got;
        ++checked;
      } else {
        EXPECT_LE(std::fabs(got - want), std::ldexp(scale, -10)) << want;  // half a subnormal step
      }
    }
  }
  EXPECT_GT(checked, n * entry * 9 / 10);
  EXPECT_EQ(read_back(bytes[slots[0] * entry + 2], scale), 0.0f);  // x[2]: token 0, element 2
}

// The fused write after the QKV projection stores what write_kv of rope(k) and v would, and q
// exactly as the fp32 path; with Qwen3's q/k norms too.
TEST(KvCacheFp8, CpuFusedQkvWriteMatchesRopeThenWrite) {
  CpuBackend plain(1), fp8(2);
  ASSERT_TRUE(fp8.set_fp8_kv_cache(true).ok());
  const int64_t n = 5, heads = 4, kv_heads = 2, dim = 16, half = 8;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> qkv(static_cast<size_t>(n * (heads + 2 * kv_heads) * dim)), freq(half), q_w(dim), k_w(dim);
  for (float& v : qkv) v = normal(rng);
  for (float& w : q_w) w = 1.0f + 0.5f * normal(rng);
  for (float& w : k_w) w = 1.0f + 0.5f * normal(rng);
  for (int64_t i = 0; i < half; ++i) freq[size_t(i)] = std::pow(10000.0f, -float(i) / float(half));
  const Tensor qkv_t = Tensor::from_f32(qkv, {n, (heads + 2 * kv_heads) * dim});
  const Tensor pos = Tensor::from_i32({0, 3, 9, 17, 40}, {n}), slots = Tensor::from_i32({7, 0, 3, 12, 5}, {n});
  const Tensor inv_freq = Tensor::from_f32(freq, {half});
  const QkNorm qwen3_norms{Tensor::from_f32(q_w, {dim}), Tensor::from_f32(k_w, {dim}), 1e-6f};
  for (const QkNorm& qk_norm : {QkNorm{}, qwen3_norms}) {
    SCOPED_TRACE(qk_norm.q_weight.defined() ? "q/k normed" : "no norms");
    KvCacheSpec spec{1, 4, 4, DType::f32, {{"k", kv_heads, dim}, {"v", kv_heads, dim}}};
    auto ref = plain.create_kv_cache(spec);
    spec.dtype = DType::f8_e4m3;
    spec.scales = {0.25f, 0.125f};
    auto got = fp8.create_kv_cache(spec);
    ASSERT_TRUE(ref.ok() && got.ok());
    Tensor q_ref = Tensor::empty(DType::f32, {n, heads, dim}), q_got = Tensor::empty(DType::f32, {n, heads, dim});
    plain.qkv_rope_write_kv(qkv_t, pos, inv_freq, slots, ref->component(0, 0), ref->component(0, 1), q_ref, qk_norm);
    fp8.qkv_rope_write_kv(qkv_t, pos, inv_freq, slots, got->component(0, 0), got->component(0, 1), q_got, qk_norm);
    EXPECT_EQ(q_ref.to_f32_vector(), q_got.to_f32_vector());
    for (int64_t c = 0; c < 2; ++c) {
      const float* want = ref->component(0, c).data<float>();
      const uint8_t* bytes = got->component(0, c).data<uint8_t>();
      for (int64_t i = 0; i < ref->component(0, c).numel(); ++i)
        EXPECT_EQ(bytes[i], kernels::host_f32_to_e4m3(want[i] / spec.scales[size_t(c)])) << c << ", " << i;
    }
  }
}

// paged_attention over an fp8 cache is paged_attention_ref's over it (dequantized with the
// tensors' scales), and within e4m3's error of attention over the unrounded values.
TEST(KvCacheFp8, CpuAttentionReadsE4m3TimesScale) {
  CpuBackend plain(2), fp8(2);
  ASSERT_TRUE(fp8.set_fp8_kv_cache(true).ok());
  const int64_t heads = 4, kv_heads = 2, dim = 16, block = 4, blocks = 8;
  const std::vector<int32_t> table = {6, 2, 5, 0, 7};
  ForwardBatch batch;
  for (int32_t p = 0; p < 19; ++p) {
    batch.positions.push_back(p);
    batch.token_ids.push_back(0);
  }
  batch.seqs.push_back({19, 19, &table, true});
  auto meta = build_attention_metadata(batch, block, blocks);
  ASSERT_TRUE(meta.ok()) << meta.error().message;
  const int64_t n = 19;
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(static_cast<size_t>(n * heads * dim)), k(static_cast<size_t>(n * kv_heads * dim)), v(k.size());
  for (float& x : q) x = normal(rng);
  for (float& x : k) x = normal(rng);
  for (float& x : v) x = normal(rng);
  KvCacheSpec spec{1, blocks, block, DType::f32, {{"k", kv_heads, dim}, {"v", kv_heads, dim}}};
  auto exact = plain.create_kv_cache(spec);
  spec.dtype = DType::f8_e4m3;
  const float k_scale = 0.02f, v_scale = 0.02f;  // |x| up to 8.96 before saturation
  spec.scales = {k_scale, v_scale};
  auto cache = fp8.create_kv_cache(spec);
  ASSERT_TRUE(exact.ok() && cache.ok());
  for (auto* b : {static_cast<Backend*>(&plain), static_cast<Backend*>(&fp8)}) {
    KvCache& c = b == &plain ? exact.value() : cache.value();
    b->write_kv(c.component(0, 0), Tensor::from_f32(k, {n, kv_heads, dim}), meta->slot_mapping);
    b->write_kv(c.component(0, 1), Tensor::from_f32(v, {n, kv_heads, dim}), meta->slot_mapping);
  }
  const float scale = 0.25f;
  Tensor out = Tensor::empty(DType::f32, {n, heads, dim}), out_exact = Tensor::empty(DType::f32, {n, heads, dim});
  fp8.paged_attention(Tensor::from_f32(q, {n, heads, dim}), cache->component(0, 0), cache->component(0, 1),
                      meta.value(), scale, out);
  plain.paged_attention(Tensor::from_f32(q, {n, heads, dim}), exact->component(0, 0), exact->component(0, 1),
                        meta.value(), scale, out_exact);
  std::vector<int32_t> seq_of(static_cast<size_t>(n), 0);
  std::vector<float> want(static_cast<size_t>(n * heads * dim));
  kernels::paged_attention_ref(q.data(), cache->component(0, 0).data<uint8_t>(), cache->component(0, 1).data<uint8_t>(),
                               batch.positions.data(), seq_of.data(), table.data(), int64_t(table.size()), block, n,
                               heads, kv_heads, dim, scale, k_scale, v_scale, want.data());
  const std::vector<float> got = out.to_f32_vector(), unrounded = out_exact.to_f32_vector();
  float worst = 0.0f, max_v = 0.0f;
  for (float x : v) max_v = std::max(max_v, std::fabs(x));
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_FLOAT_EQ(got[i], want[i]) << i;
    worst = std::max(worst, std::fabs(got[i] - unrounded[i]));
  }
  // Against attention over the unrounded K/V: an output is sum_j p_j v_j. Each |dk| <= 2^-4 |k|
  // + 2^-10 k_scale (half a subnormal step), so each score moves by at most
  // delta = scale * sum_d |q_d| |dk_d|, each weight by a factor within e^(+-2 delta), and
  // ||p' - p||_1 <= e^(2 delta) - 1; V's rounding adds 2^-4 max |v| (2^-10 v_scale absolute).
  double delta = 0.0;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t j = 0; j <= t; ++j) {
        double moved = 0.0;
        for (int64_t d = 0; d < dim; ++d) {
          const double kd = k[size_t((j * kv_heads + h / (heads / kv_heads)) * dim + d)];
          moved += std::fabs(q[size_t((t * heads + h) * dim + d)]) *
                   (kE4m3Relative * std::fabs(kd) + std::ldexp(double(k_scale), -10));
        }
        delta = std::max(delta, scale * moved);
      }
  const double max_v_read = (1.0 + kE4m3Relative) * max_v + std::ldexp(double(v_scale), -10);
  const double bound =
      (std::exp(2.0 * delta) - 1.0) * max_v_read + kE4m3Relative * max_v + std::ldexp(double(v_scale), -10);
  EXPECT_LE(worst, bound);
  EXPECT_GT(worst, 0.0f);  // the rounding shows
  std::printf("fp8 attention vs unrounded: max |diff| %.3e, bound %.3e (max |v| %.2f)\n", double(worst), bound,
              double(max_v));
}

TEST(KvCacheFp8, ScalesFromTheCheckpointByVllmsNames) {
  std::map<std::string, Tensor> w;
  w["a.k_scale"] = Tensor::from_f32({0.5f}, {});
  w["a.v_proj.v_scale"] = Tensor::from_f32({2.0f}, {1});
  w["b.kv_scale"] = Tensor::from_f32({3.0f}, {});
  w["c.attn.v_scale"] = Tensor::from_f32({0.25f}, {});
  w["bad.k_scale"] = Tensor::from_f32({-1.0f}, {});
  w["wide.k_scale"] = Tensor::from_f32({1.0f, 2.0f}, {2});
  const WeightLoader loader = testing::map_loader(w, nullptr);
  auto a = load_kv_scales(loader, "a.");
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_EQ(a->k, 0.5f);
  EXPECT_EQ(a->v, 2.0f);
  auto b = load_kv_scales(loader, "b.");  // one scale for both
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->k, 3.0f);
  EXPECT_EQ(b->v, 3.0f);
  auto c = load_kv_scales(loader, "c.");  // k absent: 1
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->k, 1.0f);
  EXPECT_EQ(c->v, 0.25f);
  auto bad = load_kv_scales(loader, "bad.");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("bad.k_scale"), std::string::npos) << bad.error().message;
  EXPECT_FALSE(load_kv_scales(loader, "wide.").ok());
  EXPECT_TRUE(is_kv_cache_scale_name("model.layers.3.self_attn.k_proj.k_scale"));
  EXPECT_FALSE(is_kv_cache_scale_name("model.layers.3.self_attn.k_proj.weight_scale"));
}

// A Llama on a backend with an fp8 cache asks for an f8_e4m3 cache with each layer's checkpoint
// scales; on an fp32 one it never looks for them.
TEST(KvCacheFp8, LlamaSpecCarriesTheCheckpointScales) {
  const ModelConfig config = testing::tiny_config(false);
  auto weights = testing::tiny_weights(config, 5);
  weights["model.layers.0.self_attn.k_scale"] = Tensor::from_f32({0.5f}, {});
  weights["model.layers.0.self_attn.v_scale"] = Tensor::from_f32({0.75f}, {});
  weights["model.layers.2.self_attn.kv_scale"] = Tensor::from_f32({1.5f}, {});
  std::vector<std::string> asked;
  CpuBackend fp8(1), plain(1);
  ASSERT_TRUE(fp8.set_fp8_kv_cache(true).ok());
  auto model = load_model(config, testing::map_loader(weights, nullptr), fp8);
  ASSERT_TRUE(model.ok()) << model.error().message;
  const KvCacheSpec spec = model.value()->kv_cache_spec(4, 16);
  EXPECT_EQ(spec.dtype, DType::f8_e4m3);
  EXPECT_EQ(spec.scales, (std::vector<float>{0.5f, 0.75f, 1.0f, 1.0f, 1.5f, 1.5f}));
  auto cache = fp8.create_kv_cache(spec);
  ASSERT_TRUE(cache.ok());
  EXPECT_EQ(cache->component(2, 1).tensor_scale(), 1.5f);
  auto on_f32 = load_model(config, testing::map_loader(weights, &asked), plain);
  ASSERT_TRUE(on_f32.ok());
  EXPECT_EQ(on_f32.value()->kv_cache_spec(4, 16).dtype, DType::f32);
  for (const auto& name : asked) EXPECT_FALSE(is_kv_cache_scale_name(name)) << name;
  // A broken scale is a load error naming it.
  weights["model.layers.1.self_attn.k_scale"] = Tensor::from_f32({0.0f}, {});
  auto broken = load_model(config, testing::map_loader(weights, nullptr), fp8);
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.error().message.find("model.layers.1.self_attn.k_scale"), std::string::npos);
}

TEST(KvCacheFp8, DeepseeksLatentCacheRefusesFp8) {
  CpuBackend backend(1);
  ASSERT_TRUE(backend.set_fp8_kv_cache(true).ok());
  auto model = load_model(std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/deepseek-v3-tiny", backend);
  ASSERT_FALSE(model.ok());
  EXPECT_EQ(model.error().code, ErrorCode::unsupported);
  EXPECT_NE(model.error().message.find("--kv-cache-dtype"), std::string::npos) << model.error().message;
}

TEST(KvCacheFp8, TheFactoryAppliesTheFlag) {
  Config config;
  config.device = "cpu";
  config.num_threads = 1;
  config.kv_cache_dtype = "fp8";
  auto backend = backends::make_backend(config);
  ASSERT_TRUE(backend.ok()) << backend.error().message;
  EXPECT_EQ(backend.value()->kv_cache_dtype(), DType::f8_e4m3);
  config.kv_cache_dtype = "auto";
  EXPECT_EQ(backends::make_backend(config).value()->kv_cache_dtype(), DType::f32);
}

}  // namespace
}  // namespace troupe
