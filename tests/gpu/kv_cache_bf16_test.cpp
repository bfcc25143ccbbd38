// The bf16 KV cache of the CUDA backend (bf16 weights): the cache writers round fp32 to nearest
// even and touch only their slots, and every attention path (tensor-core prefill, split-KV decode,
// the reference kernel) over a bf16 cache matches the CPU backend run on the bf16-rounded K/V.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <random>

#include "backends/cuda/cuda_backend.hpp"
#include "runtime/attention_metadata.hpp"
#include "backends/cpu_backend.hpp"
#include "runtime/dtype.hpp"
#include "runtime/forward_batch.hpp"
#include "runtime/kv_cache.hpp"
#include "tests/gpu/gpu_test_support.hpp"
#include "tests/gpu/paged_kv_inputs.hpp"

namespace troupe::cuda {
namespace {

std::unique_ptr<CudaBackend> make_gpu(DType weights) {
  auto created = CudaBackend::create(0, weights);
  EXPECT_TRUE(created.ok()) << created.error().message;
  return created.ok() ? std::move(created.value()) : nullptr;
}

Tensor copy_to_gpu(CudaBackend& gpu, const Tensor& host) {
  Tensor d = gpu.empty(host.dtype(), host.shape());
  EXPECT_EQ(cudaMemcpy(d.raw(), host.raw(), host.nbytes(), cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}

// A host bf16 tensor of the values rounded to nearest even (NaN stays NaN), and the same values
// widened back to fp32 (exact): what the CPU reference sees.
Tensor to_bf16(const std::vector<float>& values, std::vector<int64_t> shape) {
  Tensor t = Tensor::empty(DType::bf16, std::move(shape));
  for (size_t i = 0; i < values.size(); ++i) t.data<uint16_t>()[i] = f32_to_bf16(values[i]);
  return t;
}
std::vector<float> rounded(const std::vector<float>& values) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = bf16_to_f32(f32_to_bf16(values[i]));
  return out;
}

// ---- spec and allocation ----

TEST(KvCacheBf16, DtypeFollowsWeightsAndHalvesTheBytes) {
  TROUPE_REQUIRE_GPU();
  auto f32 = make_gpu(DType::f32), bf16 = make_gpu(DType::bf16);
  ASSERT_TRUE(f32 && bf16);
  EXPECT_EQ(f32->kv_cache_dtype(), DType::f32);
  EXPECT_EQ(bf16->kv_cache_dtype(), DType::bf16);

  KvCacheSpec spec;
  spec.num_layers = 2;
  spec.num_blocks = 3;
  spec.block_size = 16;
  spec.components = {{"k", 4, 64}, {"v", 4, 64}};
  spec.dtype = DType::f32;
  const int64_t f32_bytes = spec.total_bytes();
  spec.dtype = DType::bf16;
  EXPECT_EQ(2 * spec.total_bytes(), f32_bytes);
  EXPECT_EQ(KvCacheSpec::blocks_for_bytes(spec, f32_bytes), 2 * spec.num_blocks);

  auto cache = bf16->create_kv_cache(spec);
  ASSERT_TRUE(cache.ok()) << cache.error().message;
  for (int64_t layer = 0; layer < 2; ++layer) {
    for (int64_t c = 0; c < 2; ++c) {
      const Tensor& t = cache->component(layer, c);
      EXPECT_EQ(t.dtype(), DType::bf16);
      EXPECT_EQ(t.nbytes(), 3 * 16 * 4 * 64 * 2);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw()) % 16, 0u);  // the prefill kernel's cp.async
    }
  }
  spec.dtype = DType::f16;
  auto refused = bf16->create_kv_cache(spec);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("dtype"), std::string::npos) << refused.error().message;
}

// ---- writers ----

// fp32 values including (with specials) exact ties of bf16 rounding (even and odd kept halves),
// near-ties, a subnormal tie, and values that round up across a binade or to infinity.
std::vector<float> awkward_values(int64_t count, std::mt19937& rng, bool specials = true) {
  std::normal_distribution<float> normal(0.0f, 3.0f);
  const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x3f808001u, 0xbf7fffffu,
                              0x7f7fffffu, 0x00008000u, 0x80018000u, 0x42c78000u, 0x3f800000u};
  std::vector<float> v(static_cast<size_t>(count));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = specials && i % 5 == 0 ? std::bit_cast<float>(special[(i / 5) % std::size(special)]) : normal(rng);
  return v;
}

// Every written slot holds f32_to_bf16 of its fp32 value exactly; every other one keeps the
// poison bits (0xffff).
void expect_rounded_writes(const Tensor& cache_host, const std::vector<float>& expect_f32,
                           const std::vector<bool>& written, const std::string& what) {
  const uint16_t* bits = cache_host.data<uint16_t>();
  int64_t bad = 0;
  for (size_t i = 0; i < written.size(); ++i) {
    const uint16_t want = written[i] ? f32_to_bf16(expect_f32[i]) : uint16_t(0xffff);
    if (bits[i] != want && bad++ < 5)
      ADD_FAILURE() << what << ": element " << i << " is 0x" << std::hex << bits[i] << ", want 0x" << want;
  }
  EXPECT_EQ(bad, 0) << what;
}

TEST(KvCacheBf16, WriteKvRoundsToNearestEvenAndTouchesOnlyItsSlots) {
  TROUPE_REQUIRE_GPU();
  auto gpu = make_gpu(DType::bf16);
  ASSERT_TRUE(gpu);
  std::mt19937 rng(99);
  for (int64_t n : {1, 19, 99, 989}) {
    const int64_t entry = 4 * 64, num_slots = 2 * n + 16;
    const std::vector<float> x = awkward_values(n * entry, rng);
    std::vector<int32_t> slots(static_cast<size_t>(num_slots));
    for (size_t i = 0; i < slots.size(); ++i) slots[i] = int32_t(i);
    std::shuffle(slots.begin(), slots.end(), rng);
    slots.resize(size_t(n));
    Tensor cache = gpu->empty(DType::bf16, {num_slots / 16 + 1, 16, 4, 64});
    cudaMemset(cache.raw(), 0xff, cache.nbytes());
    gpu->write_kv(cache, copy_to_gpu(*gpu, Tensor::from_f32(x, {n, entry})), Tensor::from_i32(slots, {n}));
    EXPECT_EQ(gpu->take_error(), "");
    std::vector<float> expect(size_t(cache.numel()), 0.0f);
    std::vector<bool> written(expect.size(), false);
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t i = 0; i < entry; ++i) {
        expect[size_t(slots[size_t(t)] * entry + i)] = x[size_t(t * entry + i)];
        written[size_t(slots[size_t(t)] * entry + i)] = true;
      }
    }
    expect_rounded_writes(gpu->to_host(cache), expect, written, "write_kv n=" + std::to_string(n));
  }
}

// The fused rope + cache write into a bf16 cache stores exactly the rounding of what it stores
// into an fp32 cache (the same kernel source computes rope(k) in fp32 either way; the fp32 path is
// checked against the CPU in cuda_backend_test.cpp), v rounded from the input, q unchanged.
TEST(KvCacheBf16, QkvRopeWriteKvRoundsTheFp32Results) {
  TROUPE_REQUIRE_GPU();
  auto gpu = make_gpu(DType::bf16);
  ASSERT_TRUE(gpu);
  std::mt19937 rng(5);
  struct Shape {
    int64_t num_heads, num_kv_heads, head_dim, rotary_dim;
  };
  for (const Shape& c : {Shape{32, 8, 128, 128}, Shape{7, 1, 64, 64}, Shape{3, 1, 10, 4}, Shape{3, 3, 6, 2}}) {
    for (int64_t n : {1, 19, 99}) {
      const std::string what = "n=" + std::to_string(n) + " head_dim=" + std::to_string(c.head_dim);
      const int64_t row = (c.num_heads + 2 * c.num_kv_heads) * c.head_dim, block_size = 16;
      // No specials: rope of FLT_MAX-sized inputs could make NaN, whose bits are not the point here.
      const std::vector<float> qkv = awkward_values(n * row, rng, /*specials=*/false);
      std::vector<int32_t> pos(static_cast<size_t>(n));
      for (auto& p : pos) p = int32_t(rng() % 8192);
      std::vector<float> inv_freq(size_t(c.rotary_dim / 2));
      for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * float(i) / float(c.rotary_dim));
      const int64_t num_blocks = (2 * n + block_size - 1) / block_size + 1;
      std::vector<int32_t> slots(size_t(num_blocks * block_size));
      for (size_t i = 0; i < slots.size(); ++i) slots[i] = int32_t(i);
      std::shuffle(slots.begin(), slots.end(), rng);
      slots.resize(size_t(n));
      const std::vector<int64_t> cache_shape = {num_blocks, block_size, c.num_kv_heads, c.head_dim};
      Tensor d_qkv = copy_to_gpu(*gpu, Tensor::from_f32(qkv, {n, row}));
      Tensor freq = copy_to_gpu(*gpu, Tensor::from_f32(inv_freq, {int64_t(inv_freq.size())}));
      Tensor positions = Tensor::from_i32(pos, {n}), slot_mapping = Tensor::from_i32(slots, {n});

      Tensor k32 = gpu->empty(DType::f32, cache_shape), v32 = gpu->empty(DType::f32, cache_shape);
      Tensor k16 = gpu->empty(DType::bf16, cache_shape), v16 = gpu->empty(DType::bf16, cache_shape);
      Tensor q32 = gpu->empty(DType::f32, {n, c.num_heads, c.head_dim});
      Tensor q16 = gpu->empty(DType::f32, {n, c.num_heads, c.head_dim});
      for (Tensor* t : {&k32, &v32, &k16, &v16, &q32, &q16}) cudaMemset(t->raw(), 0xff, t->nbytes());
      gpu->qkv_rope_write_kv(d_qkv, positions, freq, slot_mapping, k32, v32, q32);
      gpu->qkv_rope_write_kv(d_qkv, positions, freq, slot_mapping, k16, v16, q16);
      EXPECT_EQ(gpu->take_error(), "") << what;

      std::vector<bool> written(size_t(numel_of(cache_shape)), false);
      const int64_t entry = c.num_kv_heads * c.head_dim;
      for (int32_t s : slots)
        for (int64_t i = 0; i < entry; ++i) written[size_t(s * entry + i)] = true;
      expect_rounded_writes(gpu->to_host(k16), gpu->to_host(k32).to_f32_vector(), written, "k " + what);
      expect_rounded_writes(gpu->to_host(v16), gpu->to_host(v32).to_f32_vector(), written, "v " + what);
      // v is a copy of the input: its rounding is the input's.
      const auto v_host = gpu->to_host(v16);
      const int64_t v_offset = (c.num_heads + c.num_kv_heads) * c.head_dim;
      for (int64_t t = 0; t < n; ++t)
        for (int64_t i = 0; i < entry; ++i)
          ASSERT_EQ(v_host.data<uint16_t>()[size_t(slots[size_t(t)] * entry + i)],
                    f32_to_bf16(qkv[size_t(t * row + v_offset + i)]))
              << what;
      const Tensor a = gpu->to_host(q16), b = gpu->to_host(q32);
      EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << "q " << what;
    }
  }
}

// ---- attention over a bf16 cache ----

struct Bf16AttentionCase {
  std::vector<std::pair<int32_t, int32_t>> seqs;  // {context_len, num_new_tokens}
  int64_t num_heads, num_kv_heads, head_dim, block_size;
};

// head_dim 16/32/64/128/256 (and 48: the reference kernel), GQA groups 1/4/8, 1, 19, 99 and 989
// new tokens, chunks starting mid-sequence, contexts crossing blocks, prefill and decode
// sequences in one batch, decode contexts long enough to split into partitions.
const std::vector<Bf16AttentionCase>& bf16_attention_cases() {
  static const std::vector<Bf16AttentionCase> cases = {
      {{{1, 1}}, 8, 8, 64, 16},
      {{{19, 19}}, 16, 4, 128, 16},
      {{{99, 99}}, 32, 4, 64, 16},
      {{{989, 989}}, 8, 1, 128, 16},
      {{{300, 45}, {1030, 1}}, 8, 2, 128, 16},
      {{{70, 70}, {530, 1}}, 4, 4, 256, 16},
      {{{129, 19}, {40, 1}}, 16, 2, 256, 16},
      {{{45, 45}, {17, 1}}, 4, 1, 16, 8},
      {{{33, 17}, {200, 130}}, 8, 2, 32, 32},
      {{{2500, 1}, {700, 1}, {129, 1}}, 12, 3, 128, 16},
      {{{1200, 1}, {150, 99}, {19, 19}, {1030, 1}, {69, 5}}, 32, 4, 64, 8},
      {{{50, 50}, {90, 1}}, 6, 2, 48, 16},
  };
  return cases;
}

struct Bf16AttentionInputs {
  Tensor q, k_rounded, v_rounded;  // host fp32: the CPU reference's inputs
  Tensor k_bf16, v_bf16;           // host bf16: the GPU cache
  AttentionMetadata meta;          // host
  std::vector<std::vector<int32_t>> tables;
};

// The paged K/V (tests/gpu/paged_kv_inputs.hpp; bf16 NaN in unowned slots) and random q.
Bf16AttentionInputs make_inputs(const Bf16AttentionCase& c, std::mt19937& rng) {
  PagedKv kv = make_paged_kv(c.seqs, c.num_kv_heads, c.head_dim, c.block_size, rng);
  Bf16AttentionInputs in;
  in.meta = std::move(kv.meta);
  in.tables = std::move(kv.tables);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(size_t(kv.num_tokens * c.num_heads * c.head_dim));
  for (auto& x : q) x = normal(rng);
  in.q = Tensor::from_f32(q, {kv.num_tokens, c.num_heads, c.head_dim});
  in.k_rounded = Tensor::from_f32(rounded(kv.k), kv.shape);
  in.v_rounded = Tensor::from_f32(rounded(kv.v), kv.shape);
  in.k_bf16 = to_bf16(kv.k, kv.shape);
  in.v_bf16 = to_bf16(kv.v, kv.shape);
  return in;
}

TEST(KvCacheBf16, AttentionMatchesCpuOnRoundedCache) {
  TROUPE_REQUIRE_GPU();
  CpuBackend cpu(2);
  std::mt19937 rng(4242);
  for (DType weights : {DType::f32, DType::bf16}) {
    auto gpu = make_gpu(weights);
    ASSERT_TRUE(gpu);
    const double tolerance = weights == DType::f32 ? kAttentionF32Tolerance : kAttentionBf16Tolerance;
    for (size_t i = 0; i < bf16_attention_cases().size(); ++i) {
      const Bf16AttentionCase& c = bf16_attention_cases()[i];
      Bf16AttentionInputs in = make_inputs(c, rng);
      const float scale = 1.0f / std::sqrt(float(c.head_dim));
      Tensor ref = Tensor::empty(DType::f32, in.q.shape());
      cpu.paged_attention(in.q, in.k_rounded, in.v_rounded, in.meta, scale, ref);

      const AttentionMetadata meta = gpu->upload_metadata(in.meta);
      Tensor out = gpu->empty(DType::f32, in.q.shape());
      cudaMemset(out.raw(), 0xff, out.nbytes());  // NaN poison
      Tensor k_cache = copy_to_gpu(*gpu, in.k_bf16), v_cache = copy_to_gpu(*gpu, in.v_bf16);
      Tensor q = copy_to_gpu(*gpu, in.q);
      gpu->paged_attention(q, k_cache, v_cache, meta, scale, out);
      gpu->paged_attention(q, k_cache, v_cache, meta, scale, out);  // again, on the step's plan
      EXPECT_EQ(gpu->take_error(), "") << "case " << i;
      const double error = attention_error(gpu->to_host(out), ref);
      EXPECT_LE(error, tolerance) << "case " << i << " weights " << dtype_name(weights) << " heads " << c.num_heads
                                  << "/" << c.num_kv_heads << " head_dim " << c.head_dim;
      std::printf("bf16 cache attention case %zu, %s weights: max error %.2e\n", i,
                  std::string(dtype_name(weights)).c_str(), error);
    }
  }
  // K and V caches of different dtypes are refused with an error naming the op, not misread.
  auto gpu = make_gpu(DType::bf16);
  ASSERT_TRUE(gpu);
  Bf16AttentionInputs in = make_inputs(bf16_attention_cases()[1], rng);
  const AttentionMetadata meta = gpu->upload_metadata(in.meta);
  Tensor out = gpu->empty(DType::f32, in.q.shape());
  gpu->paged_attention(copy_to_gpu(*gpu, in.q), copy_to_gpu(*gpu, in.k_bf16), copy_to_gpu(*gpu, in.v_rounded), meta,
                       0.1f, out);
  const std::string error = gpu->take_error();
  EXPECT_NE(error.find("paged_attention"), std::string::npos) << error;
}

}  // namespace
}  // namespace troupe::cuda
