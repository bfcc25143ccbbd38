// Backend::qkv_rope_write_kv against the composition it replaces (split q/k/v, Qwen3's per-head
// rmsnorm of q and k, rope, write_kv twice), for CpuBackend's one-pass override and for the
// Backend default built from other ops. Same formulas and no FMA contraction on the host build,
// so the results agree bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

#include "backends/cpu_backend.hpp"
#include "models/rope.hpp"

namespace troupe {
namespace {

struct QkvCase {
  int64_t n, num_heads, num_kv_heads, head_dim, rotary_dim;
};

// Awkward token counts, GQA / MQA / MHA head counts, full and partial rotary dims.
const QkvCase kCases[] = {
    {1, 3, 1, 64, 64},   {19, 3, 1, 64, 64},   {99, 3, 1, 128, 32}, {1, 32, 8, 128, 128},
    {19, 32, 8, 128, 128}, {99, 32, 8, 128, 64}, {1, 7, 7, 64, 48},  {19, 7, 7, 128, 128},
    {99, 7, 7, 64, 64},  {19, 5, 1, 6, 2},     {0, 3, 1, 64, 64},
};
constexpr int64_t kBlockSize = 16;

Tensor random_f32(std::vector<int64_t> shape, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Tensor t = Tensor::empty(DType::f32, std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = normal(rng);
  return t;
}

Tensor filled(std::vector<int64_t> shape, float value) {
  Tensor t = Tensor::empty(DType::f32, std::move(shape));
  std::fill(t.data<float>(), t.data<float>() + t.numel(), value);
  return t;
}

bool same_bits(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

// Which heads qk_norm norms: none (Llama), q and k (Qwen3), or k alone (each weight is optional).
enum class Norms { none, q_and_k, k_only };

const char* describe(Norms norms) {
  return norms == Norms::none ? "no norms" : norms == Norms::q_and_k ? "q and k normed" : "k normed";
}

struct QkvInputs {
  Tensor qkv, positions, inv_freq, slot_mapping;
  QkNorm qk_norm;
  int64_t num_slots = 0;
};

// Each head of the qkv row scaled by 10^u, u uniform in [-4, 1]: a norm that read another head's
// RMS would be off by orders of magnitude, and in the smallest heads eps (1e-6) outweighs the mean
// square (~1e-8), so a norm without it shows too.
void scale_heads(Tensor& qkv, int64_t head_dim, std::mt19937& rng) {
  std::uniform_real_distribution<float> exponent(-4.0f, 1.0f);
  float* x = qkv.data<float>();
  for (int64_t h = 0; h < qkv.numel() / head_dim; ++h) {
    const float factor = std::pow(10.0f, exponent(rng));
    for (int64_t i = 0; i < head_dim; ++i) x[h * head_dim + i] *= factor;
  }
}

QkvInputs make_inputs(const QkvCase& c, Norms norms, std::mt19937& rng) {
  QkvInputs in;
  in.qkv = random_f32({c.n, (c.num_heads + 2 * c.num_kv_heads) * c.head_dim}, rng);
  if (norms != Norms::none) {
    scale_heads(in.qkv, c.head_dim, rng);
    if (norms == Norms::q_and_k) in.qk_norm.q_weight = random_f32({c.head_dim}, rng);
    in.qk_norm.k_weight = random_f32({c.head_dim}, rng);
    in.qk_norm.eps = 1e-6f;
  }
  std::vector<int32_t> pos(static_cast<size_t>(c.n));
  for (auto& p : pos) p = int32_t(rng() % 4096);
  in.positions = Tensor::from_i32(pos, {c.n});
  const auto freq = rope_inv_freq(c.rotary_dim, 10000.0, RopeScaling{});
  in.inv_freq = Tensor::from_f32(freq, {int64_t(freq.size())});
  // Distinct slots scattered over a cache three times the batch, so most slots stay untouched.
  in.num_slots = (3 * c.n / kBlockSize + 2) * kBlockSize;
  std::vector<int32_t> all(static_cast<size_t>(in.num_slots));
  std::iota(all.begin(), all.end(), 0);
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(static_cast<size_t>(c.n));
  in.slot_mapping = Tensor::from_i32(all, {c.n});
  return in;
}

// What LlamaAttention ran before the fused op: q, k, v copied out of each row, rmsnorm of each q
// and k head (rows of head_dim) where a weight is given, rope, write_kv.
void reference(CpuBackend& cpu, const QkvCase& c, const QkvInputs& in, Tensor k_cache, Tensor v_cache, Tensor q) {
  if (c.n == 0) return;  // rope divides by n
  Tensor k = Tensor::empty(DType::f32, {c.n, c.num_kv_heads, c.head_dim});
  Tensor v = Tensor::empty(DType::f32, {c.n, c.num_kv_heads, c.head_dim});
  const int64_t q_dim = c.num_heads * c.head_dim, kv_dim = c.num_kv_heads * c.head_dim;
  for (int64_t t = 0; t < c.n; ++t) {
    const float* row = in.qkv.data<float>() + t * (q_dim + 2 * kv_dim);
    std::memcpy(q.data<float>() + t * q_dim, row, size_t(q_dim) * sizeof(float));
    std::memcpy(k.data<float>() + t * kv_dim, row + q_dim, size_t(kv_dim) * sizeof(float));
    std::memcpy(v.data<float>() + t * kv_dim, row + q_dim + kv_dim, size_t(kv_dim) * sizeof(float));
  }
  if (in.qk_norm.q_weight.defined()) {
    Tensor heads = q.reshape({c.n * c.num_heads, c.head_dim});
    cpu.rmsnorm(heads, in.qk_norm.q_weight, in.qk_norm.eps, heads);
  }
  if (in.qk_norm.k_weight.defined()) {
    Tensor heads = k.reshape({c.n * c.num_kv_heads, c.head_dim});
    cpu.rmsnorm(heads, in.qk_norm.k_weight, in.qk_norm.eps, heads);
  }
  cpu.rope(q, k, in.positions, in.inv_freq);
  cpu.write_kv(k_cache, k, in.slot_mapping);
  cpu.write_kv(v_cache, v, in.slot_mapping);
}

std::string describe(const QkvCase& c) {
  return "n=" + std::to_string(c.n) + " heads=" + std::to_string(c.num_heads) + "/" + std::to_string(c.num_kv_heads) +
         " head_dim=" + std::to_string(c.head_dim) + " rotary_dim=" + std::to_string(c.rotary_dim);
}

// The override and the default against the composition, for one case and one choice of norms.
void check_against_composition(CpuBackend& cpu, const QkvCase& c, Norms norms, std::mt19937& rng) {
  SCOPED_TRACE(describe(c) + ", " + describe(norms));
  const QkvInputs in = make_inputs(c, norms, rng);
  const std::vector<int64_t> cache_shape = {in.num_slots / kBlockSize, kBlockSize, c.num_kv_heads, c.head_dim};
  const std::vector<int64_t> q_shape = {c.n, c.num_heads, c.head_dim};
  // Caches poisoned with NaN: the reference writes only the mapped slots, so a stray write or
  // a missed one shows in the bitwise comparison.
  Tensor k_ref = filled(cache_shape, NAN), v_ref = filled(cache_shape, NAN), q_ref = filled(q_shape, NAN);
  reference(cpu, c, in, k_ref, v_ref, q_ref);
  for (bool use_default : {false, true}) {
    SCOPED_TRACE(use_default ? "Backend default" : "CpuBackend override");
    Tensor k_cache = filled(cache_shape, NAN), v_cache = filled(cache_shape, NAN), q = filled(q_shape, NAN);
    if (use_default)
      cpu.Backend::qkv_rope_write_kv(in.qkv, in.positions, in.inv_freq, in.slot_mapping, k_cache, v_cache, q,
                                     in.qk_norm);
    else
      cpu.qkv_rope_write_kv(in.qkv, in.positions, in.inv_freq, in.slot_mapping, k_cache, v_cache, q, in.qk_norm);
    EXPECT_TRUE(same_bits(q, q_ref));
    EXPECT_TRUE(same_bits(k_cache, k_ref));
    EXPECT_TRUE(same_bits(v_cache, v_ref));
    // Exactly the mapped slots were written, and q is fully written.
    const int64_t entry = c.num_kv_heads * c.head_dim;
    std::vector<bool> mapped(static_cast<size_t>(in.num_slots), false);
    for (int64_t t = 0; t < c.n; ++t) mapped[size_t(in.slot_mapping.data<int32_t>()[t])] = true;
    int64_t wrong = 0;
    for (int64_t s = 0; s < in.num_slots; ++s) {
      for (int64_t i = 0; i < entry; ++i) {
        for (const Tensor* cache : {&k_cache, &v_cache})
          wrong += std::isnan(cache->data<float>()[s * entry + i]) == mapped[size_t(s)];
      }
    }
    EXPECT_EQ(wrong, 0) << "cache entries written outside the mapped slots or left unwritten";
    EXPECT_EQ(std::count_if(q.data<float>(), q.data<float>() + q.numel(), [](float x) { return std::isnan(x); }), 0);
  }
}

TEST(QkvRopeWriteKv, OverrideAndDefaultMatchTheComposition) {
  CpuBackend cpu(3);
  std::mt19937 rng(77);
  for (const QkvCase& c : kCases) {
    for (Norms norms : {Norms::none, Norms::q_and_k, Norms::k_only}) check_against_composition(cpu, c, norms, rng);
  }
}

// The rotation itself, by hand on one head: rotate_half pairs (i, i + rotary_dim / 2) by
// pos * inv_freq[i], dims past rotary_dim copied; v is copied unchanged.
TEST(QkvRopeWriteKv, RotatesPairsByPositionTimesFrequency) {
  CpuBackend cpu(1);
  const int64_t head_dim = 8, rotary_dim = 4, half = rotary_dim / 2;
  std::mt19937 rng(5);
  Tensor qkv = random_f32({1, 3 * head_dim}, rng);  // one q, one k, one v head
  const int32_t pos = 37;
  const std::vector<float> freq = {1.0f, 0.01f};
  Tensor k_cache = filled({1, 4, 1, head_dim}, 0.0f), v_cache = filled({1, 4, 1, head_dim}, 0.0f);
  Tensor q = filled({1, 1, head_dim}, 0.0f);
  cpu.qkv_rope_write_kv(qkv, Tensor::from_i32({pos}, {1}), Tensor::from_f32(freq, {half}), Tensor::from_i32({2}, {1}),
                        k_cache, v_cache, q, {});
  const float* x = qkv.data<float>();
  for (int which = 0; which < 2; ++which) {
    const float* in = x + which * head_dim;
    const float* out = which == 0 ? q.data<float>() : k_cache.data<float>() + 2 * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const double angle = double(float(pos) * freq[size_t(i)]);
      EXPECT_NEAR(out[i], in[i] * std::cos(angle) - in[i + half] * std::sin(angle), 1e-5);
      EXPECT_NEAR(out[i + half], in[i + half] * std::cos(angle) + in[i] * std::sin(angle), 1e-5);
    }
    for (int64_t i = rotary_dim; i < head_dim; ++i) EXPECT_EQ(out[i], in[i]);
  }
  for (int64_t i = 0; i < head_dim; ++i) EXPECT_EQ(v_cache.data<float>()[2 * head_dim + i], x[2 * head_dim + i]);
  for (int64_t i = 0; i < 4 * head_dim; ++i) {
    if (i / head_dim != 2) {
      EXPECT_EQ(k_cache.data<float>()[i], 0.0f) << "slot " << i / head_dim;
    }
  }
}

}  // namespace
}  // namespace troupe
