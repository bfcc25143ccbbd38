// Op table rows: rope, the fused qkv_rope_write_kv (fp32, bf16 and fp8 caches, aligned and not, with
// and without Qwen3's per-head q/k norms) and the KV cache writes.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <type_traits>

#include "kernels/kv_write.hpp"
#include "kernels/qkv_rope.hpp"
#include "kernels/rope.hpp"
#include "tests/gpu/backend_ops_table.hpp"

namespace troupe::backend_ops {
using namespace kernels;
namespace {

constexpr int64_t kTokens[] = {1, 19, 99, 989};
constexpr int64_t kBlockSize = 16;

// float: an fp32 cache; uint16_t: bf16 bits; uint8_t: e4m3 bytes (--kv-cache-dtype fp8) written as
// e4m3(x / scale) with these per-tensor scales (not powers of two, so the division rounds).
template <class CacheT>
constexpr Elem cache_elem() {
  return std::is_same_v<CacheT, float> ? Elem::f32 : std::is_same_v<CacheT, uint16_t> ? Elem::bf16 : Elem::e4m3;
}
template <class CacheT>
const char* cache_variant() {
  return std::is_same_v<CacheT, float> ? "f32 cache" : std::is_same_v<CacheT, uint16_t> ? "bf16 cache" : "fp8 cache";
}
constexpr float kFp8KScale = 0.037f, kFp8VScale = 0.0113f;
// An fp8 cache written from fp32 values a few ulp apart (rope's products, fused or not): equal, or
// one e4m3 step (2^-3 relative) apart where a rounding boundary falls between them (~1e-6 of the
// values): NMSE ~1e-8. Truncating instead of rounding to nearest (~4e-3) or a wrong scale (~1)
// crosses 1e-4.
constexpr double kE4m3Tolerance = 1e-4;

// inv_freq[i] = 10000^(-2i / rotary_dim), i < rotary_dim / 2.
float* make_inv_freq(OpRun& r, int64_t rotary_dim) {
  const int64_t half = rotary_dim / 2;
  float* f = r.host<float>(size_t(half));
  for (int64_t i = 0; i < half; ++i) f[i] = std::pow(10000.0f, -2.0f * float(i) / float(rotary_dim));
  return f;
}

// n distinct slots out of a cache of about twice as many (the rest must stay poisoned).
std::vector<int32_t> random_slots(int64_t n, int64_t num_slots, std::mt19937& rng) {
  std::vector<int32_t> slots(static_cast<size_t>(num_slots));
  std::iota(slots.begin(), slots.end(), 0);
  std::shuffle(slots.begin(), slots.end(), rng);
  slots.resize(size_t(n));
  return slots;
}

// Positions up to 4096: angles up to 4096 rad, cos/sin in double on both sides.
OpCase rope_case(int64_t n, int64_t heads, int64_t kv_heads, int64_t head_dim) {
  return {"rope", "f32", sizes({{"n", n}, {"heads", heads}, {"kv_heads", kv_heads}, {"head_dim", head_dim}}),
          [=](std::mt19937& rng) {
            OpRun r;
            const int64_t half = head_dim / 2;
            const size_t q_count = size_t(n * heads * head_dim), k_count = size_t(n * kv_heads * head_dim);
            float* q = r.host<float>(q_count);
            float* k = r.host<float>(k_count);
            fill_normal(q, q_count, rng);
            fill_normal(k, k_count, rng);
            int32_t* pos = r.host<int32_t>(size_t(n));
            for (int64_t t = 0; t < n; ++t) pos[t] = int32_t(rng() % 4096);
            const float* inv_freq = make_inv_freq(r, head_dim);
            float* dq = r.device(q, q_count);
            float* dk = r.device(k, k_count);
            const int32_t* d_pos = r.device(pos, size_t(n));
            const float* d_freq = r.device(inv_freq, size_t(half));
            r.launch = [=](cudaStream_t s) {
              return launch_rope_f32(dq, dk, d_pos, d_freq, n, heads, kv_heads, head_dim, half, s);
            };
            r.reference = [=] { rope_ref(q, k, pos, inv_freq, n, heads, kv_heads, head_dim, half); };
            r.expect("q", Elem::f32, dq, q, Elem::f32, q_count, kF32Tolerance);
            r.expect("k", Elem::f32, dk, k, Elem::f32, k_count, kF32Tolerance);
            r.bytes = double(2 * (q_count + k_count) * 4);
            return r;
          }};
}

struct QkvShape {
  int64_t num_heads, num_kv_heads, head_dim, rotary_dim;
};

// Which heads the fused op norms (HeadNorms): none (Llama), q and k (Qwen3), or k alone (a null
// q weight beside a k weight, in the same blocks).
enum class QkNorms { none, q_and_k, k_only };

// Qwen3's eps. The rows' heads are scaled by 10^u, u uniform in [-4, 1] (scale_heads): a norm that
// read another head's sum would be off by orders of magnitude, and in the smallest heads (mean
// square ~1e-7) eps weighs ~10x the mean square, so dropping it shows too.
constexpr float kQkNormEps = 1e-6f;

void scale_heads(float* qkv, int64_t num_heads_total, int64_t head_dim, std::mt19937& rng) {
  std::uniform_real_distribution<float> exponent(-4.0f, 1.0f);
  for (int64_t h = 0; h < num_heads_total; ++h) {
    const float factor = std::pow(10.0f, exponent(rng));
    for (int64_t i = 0; i < head_dim; ++i) qkv[h * head_dim + i] *= factor;
  }
}

// misaligned: qkv one float off a 16-byte boundary (the scalar path).
template <class CacheT>
OpCase qkv_rope_case(QkvShape c, int64_t n, bool misaligned, QkNorms norms = QkNorms::none) {
  std::string dims = sizes({{"n", n},
                            {"heads", c.num_heads},
                            {"kv_heads", c.num_kv_heads},
                            {"head_dim", c.head_dim},
                            {"rotary", c.rotary_dim}});
  if (misaligned) dims += " qkv+1";
  if (norms == QkNorms::k_only) dims += " k only";
  const std::string variant = std::string(cache_variant<CacheT>()) + (norms == QkNorms::none ? "" : " qk-norm");
  return {"qkv_rope_write_kv", variant, dims, [=](std::mt19937& rng) {
            OpRun r;
            const int64_t row = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim, half = c.rotary_dim / 2;
            const int64_t num_blocks = (2 * n + kBlockSize - 1) / kBlockSize + 1;
            const size_t cache_count = size_t(num_blocks * kBlockSize * c.num_kv_heads * c.head_dim);
            const size_t q_count = size_t(n * c.num_heads * c.head_dim);
            float* qkv = r.host<float>(size_t(n * row));
            fill_normal(qkv, size_t(n * row), rng, 3.0f);
            HeadNorms h_norms, d_norms;  // host (the reference's) and device (the kernel's) weights
            if (norms != QkNorms::none) {
              scale_heads(qkv, n * (c.num_heads + 2 * c.num_kv_heads), c.head_dim, rng);
              float* q_w = r.host<float>(size_t(c.head_dim));
              float* k_w = r.host<float>(size_t(c.head_dim));
              fill_normal(q_w, size_t(c.head_dim), rng);
              fill_normal(k_w, size_t(c.head_dim), rng);
              if (norms == QkNorms::q_and_k) h_norms.q_weight = q_w;
              h_norms.k_weight = k_w;
              h_norms.eps = d_norms.eps = kQkNormEps;
              if (h_norms.q_weight) d_norms.q_weight = r.device(q_w, size_t(c.head_dim));
              d_norms.k_weight = r.device(k_w, size_t(c.head_dim));
            }
            int32_t* pos = r.host<int32_t>(size_t(n));
            for (int64_t t = 0; t < n; ++t) pos[t] = int32_t(rng() % 8192);
            const float* inv_freq = make_inv_freq(r, c.rotary_dim);
            const std::vector<int32_t> picked = random_slots(n, num_blocks * kBlockSize, rng);
            int32_t* slots = r.host<int32_t>(size_t(n));
            std::copy(picked.begin(), picked.end(), slots);
            const float* d_qkv = r.device(qkv, size_t(n * row), misaligned ? 1 : 0);
            const int32_t* d_pos = r.device(pos, size_t(n));
            const float* d_freq = r.device(inv_freq, size_t(half));
            const int32_t* d_slots = r.device(slots, size_t(n));
            CacheT* k_cache = r.poisoned<CacheT>(cache_count);
            CacheT* v_cache = r.poisoned<CacheT>(cache_count);
            float* q = r.poisoned<float>(q_count);
            CacheT* k_ref = r.host<CacheT>(cache_count, poison_value<CacheT>());
            CacheT* v_ref = r.host<CacheT>(cache_count, poison_value<CacheT>());
            float* q_ref = r.host<float>(q_count, poison_value<float>());
            if constexpr (std::is_same_v<CacheT, uint8_t>) {
              r.launch = [=](cudaStream_t s) {
                return launch_qkv_rope_write_kv_f32(d_qkv, d_pos, d_freq, d_slots, k_cache, v_cache, q, n,
                                                    c.num_heads, c.num_kv_heads, c.head_dim, half, kFp8KScale,
                                                    kFp8VScale, d_norms, s);
              };
              r.reference = [=] {
                qkv_rope_write_kv_ref(qkv, pos, inv_freq, slots, k_ref, v_ref, q_ref, n, c.num_heads, c.num_kv_heads,
                                      c.head_dim, half, kFp8KScale, kFp8VScale, h_norms);
              };
            } else {
              r.launch = [=](cudaStream_t s) {
                return launch_qkv_rope_write_kv_f32(d_qkv, d_pos, d_freq, d_slots, k_cache, v_cache, q, n,
                                                    c.num_heads, c.num_kv_heads, c.head_dim, half, d_norms, s);
              };
              r.reference = [=] {
                qkv_rope_write_kv_ref(qkv, pos, inv_freq, slots, k_ref, v_ref, q_ref, n, c.num_heads, c.num_kv_heads,
                                      c.head_dim, half, h_norms);
              };
            }
            constexpr double k_tolerance = std::is_same_v<CacheT, float>      ? kF32Tolerance
                                           : std::is_same_v<CacheT, uint16_t> ? kBf16Tolerance
                                                                              : kE4m3Tolerance;
            r.expect("q", Elem::f32, q, q_ref, Elem::f32, q_count, kF32Tolerance);
            r.expect("k cache", cache_elem<CacheT>(), k_cache, k_ref, cache_elem<CacheT>(), cache_count, k_tolerance);
            // v is copied (rounded to nearest even into a bf16 cache, e4m3(v / scale) into an fp8 one,
            // the same division and rounding on both sides): the same bits.
            r.expect("v cache", cache_elem<CacheT>(), v_cache, v_ref, cache_elem<CacheT>(), cache_count, kExact);
            r.bytes = double(size_t(n * row) * 4 + size_t(n) * 8 + q_count * 4 +
                             2 * size_t(n * c.num_kv_heads * c.head_dim) * sizeof(CacheT));
            return r;
          }};
}

// Awkward fp32 values (bf16 rounding ties, overflow to inf: an fp8 cache saturates them to +-448
// steps of its scale) into n shuffled slots.
template <class CacheT>
OpCase write_kv_case(int64_t n, int64_t entry) {
  return {"write_kv", cache_variant<CacheT>(), sizes({{"n", n}, {"entry", entry}}), [=](std::mt19937& rng) {
            OpRun r;
            const int64_t num_slots = (2 * n + 16) / kBlockSize * kBlockSize + kBlockSize;
            float* x = r.host<float>(size_t(n * entry));
            fill_awkward(x, size_t(n * entry), rng);
            const std::vector<int32_t> picked = random_slots(n, num_slots, rng);
            int32_t* slots = r.host<int32_t>(size_t(n));
            std::copy(picked.begin(), picked.end(), slots);
            const float* dx = r.device(x, size_t(n * entry));
            const int32_t* d_slots = r.device(slots, size_t(n));
            CacheT* cache = r.poisoned<CacheT>(size_t(num_slots * entry));
            CacheT* ref = r.host<CacheT>(size_t(num_slots * entry), poison_value<CacheT>());
            if constexpr (std::is_same_v<CacheT, uint8_t>) {
              r.launch = [=](cudaStream_t s) {
                return launch_write_kv_f32(cache, dx, d_slots, n, entry, kFp8KScale, s);
              };
              r.reference = [=] { write_kv_ref(ref, x, slots, n, entry, kFp8KScale); };
            } else {
              r.launch = [=](cudaStream_t s) { return launch_write_kv_f32(cache, dx, d_slots, n, entry, s); };
              r.reference = [=] { write_kv_ref(ref, x, slots, n, entry); };
            }
            r.expect("cache", cache_elem<CacheT>(), cache, ref, cache_elem<CacheT>(), size_t(num_slots * entry), kExact);
            r.bytes = double(size_t(n * entry) * (4 + sizeof(CacheT)) + size_t(n) * 4);
            return r;
          }};
}

}  // namespace

void add_rope_and_kv_cases(std::vector<OpCase>& t) {
  for (int64_t n : kTokens) {
    t.push_back(rope_case(n, 7, 1, 48));
    t.push_back(rope_case(n, 32, 8, 128));
  }
  // float4 (head_dim 128, 64), float2 (head_dim 10, rotary 4) and scalar (head_dim 6, rotary 2)
  // accesses; GQA, MQA and MHA; full and partial rotary dims.
  const QkvShape shapes[] = {{32, 8, 128, 128}, {7, 1, 64, 64}, {5, 5, 128, 64}, {3, 1, 10, 4}, {3, 3, 6, 2}};
  for (const QkvShape& c : shapes) {
    for (int64_t n : kTokens) t.push_back(qkv_rope_case<float>(c, n, false));
    for (int64_t n : {19, 99}) t.push_back(qkv_rope_case<float>(c, n, true));
  }
  for (const QkvShape& c : shapes) {
    for (int64_t n : {1, 19, 99}) t.push_back(qkv_rope_case<uint16_t>(c, n, false));
    t.push_back(qkv_rope_case<uint16_t>(c, 19, true));
  }
  for (int64_t n : kTokens) t.push_back(write_kv_case<float>(n, 4 * 64));
  for (int64_t n : kTokens) t.push_back(write_kv_case<uint16_t>(n, 4 * 64));
  // The fp8 cache (--kv-cache-dtype fp8): 4-, 2- and 1-byte stores of the fused write; saturation.
  for (const QkvShape& c : shapes) {
    for (int64_t n : {1, 19, 99}) t.push_back(qkv_rope_case<uint8_t>(c, n, false));
    t.push_back(qkv_rope_case<uint8_t>(c, 19, true));
  }
  for (int64_t n : kTokens) t.push_back(write_kv_case<uint8_t>(n, 4 * 64));
  // Qwen3's per-head q/k norms in the fused op: Qwen3-8B's heads (32/8 x 128: float4, one pass of a
  // warp's lanes over a head), 256-dim heads with a partial rotary part (two passes; normed copied
  // dims), 10 and 6 (float2 and scalar, lanes idle), misaligned (scalar at 128: four passes), k alone.
  const QkvShape norm_shapes[] = {{32, 8, 128, 128}, {8, 2, 256, 64}, {3, 1, 10, 4}, {3, 3, 6, 2}};
  for (const QkvShape& c : norm_shapes) {
    for (int64_t n : kTokens) t.push_back(qkv_rope_case<float>(c, n, false, QkNorms::q_and_k));
    t.push_back(qkv_rope_case<float>(c, 19, true, QkNorms::q_and_k));
    for (int64_t n : {1, 19, 99}) t.push_back(qkv_rope_case<uint16_t>(c, n, false, QkNorms::q_and_k));
    for (int64_t n : {1, 19, 99}) t.push_back(qkv_rope_case<uint8_t>(c, n, false, QkNorms::q_and_k));
    t.push_back(qkv_rope_case<uint8_t>(c, 19, true, QkNorms::q_and_k));
  }
  for (int64_t n : {1, 99}) t.push_back(qkv_rope_case<float>({32, 8, 128, 128}, n, false, QkNorms::k_only));
}

}  // namespace troupe::backend_ops
