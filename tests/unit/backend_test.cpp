// Each CpuBackend op against a naive loop written here, on awkward sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <random>

#include "backends/cpu_backend.hpp"
#include "models/rope.hpp"

namespace troupe {
namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

float max_diff(const float* a, const std::vector<float>& b) {
  float d = 0.0f;
  for (size_t i = 0; i < b.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

const int64_t kRows[] = {1, 3, 19};
const int64_t kWidths[] = {1, 7, 111, 500};

TEST(BackendCpu, RmsNormAndFusedAddMatchNaive) {
  CpuBackend backend(3);
  for (int64_t n : kRows) {
    for (int64_t h : kWidths) {
      auto x = randn(size_t(n * h), 1), r = randn(size_t(n * h), 2), w = randn(size_t(h), 3);
      std::vector<float> expected(x.size()), expected_sum(x.size()), expected_fused(x.size());
      for (int64_t t = 0; t < n; ++t) {
        double ss = 0, ss_sum = 0;
        for (int64_t i = 0; i < h; ++i) {
          ss += double(x[t * h + i]) * x[t * h + i];
          expected_sum[t * h + i] = r[t * h + i] + x[t * h + i];
          ss_sum += double(expected_sum[t * h + i]) * expected_sum[t * h + i];
        }
        for (int64_t i = 0; i < h; ++i) {
          expected[t * h + i] = float(x[t * h + i] / std::sqrt(ss / h + 1e-5) * w[i]);
          expected_fused[t * h + i] = float(expected_sum[t * h + i] / std::sqrt(ss_sum / h + 1e-5) * w[i]);
        }
      }
      Tensor xt = Tensor::from_f32(x, {n, h}), wt = Tensor::from_f32(w, {h}), out = backend.empty(DType::f32, {n, h});
      backend.rmsnorm(xt, wt, 1e-5f, out);
      EXPECT_LE(max_diff(out.data<float>(), expected), 1e-5f) << n << "x" << h;
      Tensor residual = Tensor::from_f32(r, {n, h});
      backend.add_rmsnorm(residual, xt, wt, 1e-5f, out);
      EXPECT_LE(max_diff(residual.data<float>(), expected_sum), 1e-6f);
      EXPECT_LE(max_diff(out.data<float>(), expected_fused), 1e-5f) << n << "x" << h;
    }
  }
}

TEST(BackendCpu, LinearWithAndWithoutBiasMatchesNaive) {
  CpuBackend backend(2);
  for (int64_t n : kRows) {
    for (int64_t in : {1, 13, 111}) {
      for (int64_t out_features : {1, 9, 99}) {
        auto x = randn(size_t(n * in), 4), w = randn(size_t(out_features * in), 5), b = randn(size_t(out_features), 6);
        for (bool with_bias : {false, true}) {
          std::vector<float> expected(static_cast<size_t>(n * out_features));
          for (int64_t t = 0; t < n; ++t) {
            for (int64_t j = 0; j < out_features; ++j) {
              double acc = with_bias ? b[j] : 0.0;
              for (int64_t i = 0; i < in; ++i) acc += double(x[t * in + i]) * w[j * in + i];
              expected[t * out_features + j] = float(acc);
            }
          }
          Tensor out = backend.empty(DType::f32, {n, out_features});
          backend.linear(Tensor::from_f32(x, {n, in}), Tensor::from_f32(w, {out_features, in}),
                         with_bias ? Tensor::from_f32(b, {out_features}) : Tensor(), out);
          EXPECT_LE(max_diff(out.data<float>(), expected), 1e-4f) << n << " " << in << " " << out_features;
        }
      }
    }
  }
}

TEST(BackendCpu, RopeRotatesHalvesLikeHuggingFace) {
  CpuBackend backend(2);
  const int64_t n = 5, heads = 3, kv_heads = 1, head_dim = 10;
  const std::vector<int32_t> positions = {0, 1, 7, 30, 200};
  const auto inv_freq = rope_inv_freq(head_dim, 10000.0, RopeScaling{});
  auto q = randn(size_t(n * heads * head_dim), 7), k = randn(size_t(n * kv_heads * head_dim), 8);
  auto reference = [&](std::vector<float> x, int64_t num_heads) {
    // HF: x * cos(emb) + rotate_half(x) * sin(emb), emb = cat(freqs, freqs).
    const int64_t half = head_dim / 2;
    std::vector<float> out(x.size());
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t h = 0; h < num_heads; ++h) {
        const float* in = &x[size_t((t * num_heads + h) * head_dim)];
        for (int64_t d = 0; d < head_dim; ++d) {
          const double angle = double(float(positions[t]) * inv_freq[d % half]);
          const double rotated = d < half ? -in[d + half] : in[d - half];
          out[size_t((t * num_heads + h) * head_dim + d)] = float(in[d] * std::cos(angle) + rotated * std::sin(angle));
        }
      }
    }
    return out;
  };
  Tensor qt = Tensor::from_f32(q, {n, heads, head_dim}), kt = Tensor::from_f32(k, {n, kv_heads, head_dim});
  backend.rope(qt, kt, Tensor::from_i32(positions, {n}), Tensor::from_f32(inv_freq, {head_dim / 2}));
  EXPECT_LE(max_diff(qt.data<float>(), reference(q, heads)), 1e-5f);
  EXPECT_LE(max_diff(kt.data<float>(), reference(k, kv_heads)), 1e-5f);
}

TEST(BackendCpu, RopeLlama3ScalingFollowsTheFormula) {
  RopeScaling scaling;
  scaling.type = "llama3";
  scaling.factor = 8.0;
  scaling.low_freq_factor = 1.0;
  scaling.high_freq_factor = 4.0;
  scaling.original_max_position_embeddings = 64;
  const int64_t dim = 32;
  const double theta = 500000.0;
  const auto plain = rope_inv_freq(dim, theta, RopeScaling{});
  const auto scaled = rope_inv_freq(dim, theta, scaling);
  ASSERT_EQ(scaled.size(), size_t(dim / 2));
  int num_kept = 0, num_divided = 0, num_smoothed = 0;
  for (int64_t i = 0; i < dim / 2; ++i) {
    const double base = 1.0 / std::pow(theta, double(2 * i) / double(dim));
    EXPECT_NEAR(plain[size_t(i)], base, base * 1e-6);
    const double wavelen = 2 * std::numbers::pi / base;
    double expected;
    if (wavelen < 64.0 / 4.0) {
      expected = base;
      ++num_kept;
    } else if (wavelen > 64.0 / 1.0) {
      expected = base / 8.0;
      ++num_divided;
    } else {
      const double smooth = (64.0 / wavelen - 1.0) / (4.0 - 1.0);
      expected = (1 - smooth) * base / 8.0 + smooth * base;
      ++num_smoothed;
    }
    EXPECT_NEAR(scaled[size_t(i)], expected, expected * 1e-5) << "i=" << i;
  }
  // The sizes above put frequencies in all three bands.
  EXPECT_GT(num_kept, 0);
  EXPECT_GT(num_divided, 0);
  EXPECT_GT(num_smoothed, 0);

  RopeScaling linear;
  linear.type = "linear";
  linear.factor = 4.0;
  const auto lin = rope_inv_freq(dim, theta, linear);
  for (int64_t i = 0; i < dim / 2; ++i) EXPECT_FLOAT_EQ(lin[size_t(i)], plain[size_t(i)] / 4.0f);
}

TEST(BackendCpu, EmbeddingSiluAddGatherArgmaxMatchNaive) {
  CpuBackend backend(2);
  const int64_t vocab = 11, hidden = 7;
  auto table = randn(size_t(vocab * hidden), 9);
  const std::vector<int32_t> ids = {3, 0, 10, 3};
  Tensor emb = backend.empty(DType::f32, {4, hidden});
  backend.embedding(Tensor::from_i32(ids, {4}), Tensor::from_f32(table, {vocab, hidden}), emb);
  for (size_t t = 0; t < ids.size(); ++t) {
    for (int64_t i = 0; i < hidden; ++i) EXPECT_EQ(emb.data<float>()[t * hidden + i], table[ids[t] * hidden + i]);
  }

  const int64_t total = 3 * 77777;  // above the parallel chunk size
  auto g = randn(size_t(total), 10, 3.0f), u = randn(size_t(total), 11);
  Tensor out = backend.empty(DType::f32, {3, 77777});
  backend.silu_and_mul(Tensor::from_f32(g, {3, 77777}), Tensor::from_f32(u, {3, 77777}), out);
  std::vector<float> expected(static_cast<size_t>(total)), sum(static_cast<size_t>(total));
  for (int64_t i = 0; i < total; ++i) {
    expected[i] = float(g[i] / (1.0 + std::exp(-double(g[i]))) * u[i]);
    sum[i] = g[i] + u[i];
  }
  EXPECT_LE(max_diff(out.data<float>(), expected), 1e-5f);
  backend.add(Tensor::from_f32(g, {total}), Tensor::from_f32(u, {total}), out.reshape({total}));
  EXPECT_LE(max_diff(out.data<float>(), sum), 0.0f);

  Tensor gathered = backend.empty(DType::f32, {2, hidden});
  backend.gather_rows(emb, {2, 0}, gathered);
  for (int64_t i = 0; i < hidden; ++i) {
    EXPECT_EQ(gathered.data<float>()[i], table[10 * hidden + i]);
    EXPECT_EQ(gathered.data<float>()[hidden + i], table[3 * hidden + i]);
  }

  std::vector<float> logits = {0.5f, 2.0f, 2.0f, -1.0f, -3.0f, -2.0f, -5.0f, -2.5f};
  EXPECT_EQ(backend.argmax(Tensor::from_f32(logits, {2, 4})), (std::vector<int32_t>{1, 1}));
}

// Paged attention over non-contiguous blocks against dense causal softmax attention.
TEST(BackendCpu, PagedAttentionMatchesDenseCausalAttention) {
  CpuBackend backend(3);
  const int64_t num_heads = 6, num_kv_heads = 2, head_dim = 5, block_size = 3, num_blocks = 20;
  // Two sequences: 7 tokens all new (prefill), and 10 tokens of which the last 2 are new.
  const std::vector<int32_t> context = {7, 10}, num_new = {7, 2};
  const std::vector<std::vector<int32_t>> tables = {{4, 17, 2}, {9, 0, 13, 6}};
  const int64_t n = 9;
  KvCacheSpec spec{1, num_blocks, block_size, DType::f32, {{"k", num_kv_heads, head_dim}, {"v", num_kv_heads, head_dim}}};
  auto cache = backend.create_kv_cache(spec);
  ASSERT_TRUE(cache.ok());
  // Dense K/V per sequence: [len, kv_heads, head_dim]; write every token through write_kv.
  std::vector<std::vector<float>> keys, values;
  for (size_t s = 0; s < 2; ++s) {
    keys.push_back(randn(size_t(context[s] * num_kv_heads * head_dim), 20 + s));
    values.push_back(randn(size_t(context[s] * num_kv_heads * head_dim), 30 + s));
    std::vector<int32_t> slots;
    for (int32_t p = 0; p < context[s]; ++p) slots.push_back(tables[s][p / block_size] * block_size + p % block_size);
    Tensor slot_t = Tensor::from_i32(slots, {context[s]});
    backend.write_kv(cache->component(0, 0), Tensor::from_f32(keys[s], {context[s], num_kv_heads, head_dim}), slot_t);
    backend.write_kv(cache->component(0, 1), Tensor::from_f32(values[s], {context[s], num_kv_heads, head_dim}), slot_t);
  }
  ForwardBatch batch;
  for (size_t s = 0; s < 2; ++s) {
    for (int32_t i = 0; i < num_new[s]; ++i) {
      batch.positions.push_back(context[s] - num_new[s] + i);
      batch.token_ids.push_back(0);
    }
    batch.seqs.push_back({num_new[s], context[s], &tables[s], true});
  }
  auto meta = build_attention_metadata(batch, block_size, num_blocks);
  ASSERT_TRUE(meta.ok()) << meta.error().message;
  auto q = randn(size_t(n * num_heads * head_dim), 40);
  const float scale = 0.37f;
  Tensor out = backend.empty(DType::f32, {n, num_heads, head_dim});
  backend.paged_attention(Tensor::from_f32(q, {n, num_heads, head_dim}), cache->component(0, 0),
                          cache->component(0, 1), meta.value(), scale, out);
  std::vector<float> expected(static_cast<size_t>(n * num_heads * head_dim));
  int64_t t = 0;
  for (size_t s = 0; s < 2; ++s) {
    for (int32_t i = 0; i < num_new[s]; ++i, ++t) {
      const int64_t pos = context[s] - num_new[s] + i;
      for (int64_t h = 0; h < num_heads; ++h) {
        const int64_t g = h / (num_heads / num_kv_heads);
        std::vector<double> w(static_cast<size_t>(pos + 1));
        double mx = -1e30, denom = 0;
        for (int64_t j = 0; j <= pos; ++j) {
          double dot = 0;
          for (int64_t d = 0; d < head_dim; ++d) {
            dot += double(q[(t * num_heads + h) * head_dim + d]) * keys[s][(j * num_kv_heads + g) * head_dim + d];
          }
          w[j] = dot * scale;
          mx = std::max(mx, w[j]);
        }
        for (auto& x : w) denom += (x = std::exp(x - mx));
        for (int64_t d = 0; d < head_dim; ++d) {
          double acc = 0;
          for (int64_t j = 0; j <= pos; ++j) acc += w[j] / denom * values[s][(j * num_kv_heads + g) * head_dim + d];
          expected[(t * num_heads + h) * head_dim + d] = float(acc);
        }
      }
    }
  }
  EXPECT_LE(max_diff(out.data<float>(), expected), 1e-5f);
}

TEST(BackendCpu, UploadWeightConvertsHalfTypesToF32) {
  CpuBackend backend(1);
  Tensor bf = Tensor::empty(DType::bf16, {3});
  const float values[] = {1.5f, -2.25f, 0.0078125f};
  for (int i = 0; i < 3; ++i) bf.data<uint16_t>()[i] = f32_to_bf16(values[i]);
  auto up = backend.upload_weight(bf);
  ASSERT_TRUE(up.ok());
  EXPECT_EQ(up->dtype(), DType::f32);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(up->data<float>()[i], values[i]);
  EXPECT_FALSE(backend.upload_weight(Tensor::zeros(DType::i64, {2})).ok());
}

TEST(BackendCpu, ThreadPoolCoversEveryIndexOnce) {
  for (int64_t threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 7, 1000}) {
      for (int repeat = 0; repeat < 20; ++repeat) {
        std::vector<int> hits(size_t(n), 0);
        pool.parallel_for(n, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) ++hits[size_t(i)];
        });
        EXPECT_EQ(std::count(hits.begin(), hits.end(), 1), n);
      }
    }
  }
}

}  // namespace
}  // namespace troupe

namespace troupe {
namespace {

// bf16 weights kept as bf16 give what their fp32 widening gives, in linear and embedding.
TEST(BackendCpu, KeptBf16WeightsMatchWidenedWeights) {
  CpuBackend f32_backend(2), bf16_backend(2, /*keep_bf16_weights=*/true);
  for (int64_t out_features : {1, 300, 517}) {
    const int64_t n = 3, in = 37;
    auto w = randn(size_t(out_features * in), 50);
    Tensor bf = Tensor::empty(DType::bf16, {out_features, in});
    for (size_t i = 0; i < w.size(); ++i) bf.data<uint16_t>()[i] = f32_to_bf16(w[i]);
    auto kept = bf16_backend.upload_weight(bf);
    auto widened = f32_backend.upload_weight(bf);
    ASSERT_TRUE(kept.ok() && widened.ok());
    EXPECT_EQ(kept->dtype(), DType::bf16);
    EXPECT_EQ(widened->dtype(), DType::f32);
    Tensor x = Tensor::from_f32(randn(size_t(n * in), 51), {n, in});
    Tensor a = Tensor::empty(DType::f32, {n, out_features}), b = Tensor::empty(DType::f32, {n, out_features});
    bf16_backend.linear(x, kept.value(), Tensor(), a);
    f32_backend.linear(x, widened.value(), Tensor(), b);
    EXPECT_LE(max_diff(a.data<float>(), b.to_f32_vector()), 1e-5f) << out_features;
    Tensor ids = Tensor::from_i32({int32_t(out_features - 1), 0}, {2});
    Tensor ea = Tensor::empty(DType::f32, {2, in}), eb = Tensor::empty(DType::f32, {2, in});
    bf16_backend.embedding(ids, kept.value(), ea);
    f32_backend.embedding(ids, widened.value(), eb);
    EXPECT_EQ(ea.to_f32_vector(), eb.to_f32_vector());
  }
}

}  // namespace
}  // namespace troupe
