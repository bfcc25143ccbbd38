// The fp8 KV cache on the CUDA backend (--kv-cache-dtype fp8): its dtype, the backend's dispatch of
// the write and attention ops to the e4m3 kernels (against the CPU backend's fp8 path, the
// reference), and on the dense fixtures the same accuracy claim the CPU test asserts
// (tests/unit/kv_fp8_accuracy.hpp). The kernels alone are rows of the op table
// (backend_ops_rope_kv.cpp, backend_ops_attention.cpp: "fp8 cache").
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>

#include "backends/cpu_backend.hpp"
#include "backends/cuda/cuda_backend.hpp"
#include "kernels/host_fp8.hpp"
#include "runtime/attention_metadata.hpp"
#include "runtime/kv_cache.hpp"
#include "tests/gpu/gpu_test_support.hpp"
#include "tests/gpu/paged_kv_inputs.hpp"
#include "tests/unit/kv_fp8_accuracy.hpp"

namespace troupe::cuda {
namespace {

constexpr float kKScale = 0.0191f, kVScale = 0.0173f;  // N(0, 1) values fit under 448 * scale

std::unique_ptr<CudaBackend> make_gpu(DType weights, bool fp8) {
  auto created = CudaBackend::create(0, weights);
  EXPECT_TRUE(created.ok()) << created.error().message;
  if (!created.ok()) return nullptr;
  EXPECT_TRUE(created.value()->set_fp8_kv_cache(fp8).ok());
  return std::move(created.value());
}

Tensor copy_to_gpu(CudaBackend& gpu, const Tensor& host) {
  Tensor d = gpu.empty(host.dtype(), host.shape());
  EXPECT_EQ(cudaMemcpy(d.raw(), host.raw(), host.nbytes(), cudaMemcpyHostToDevice), cudaSuccess);
  d.set_tensor_scale(host.tensor_scale());
  return d;
}

// The values as an fp8 cache tensor of `scale` (NaN stays NaN: unowned slots).
Tensor to_fp8(const std::vector<float>& values, std::vector<int64_t> shape, float scale) {
  Tensor t = Tensor::empty(DType::f8_e4m3, std::move(shape));
  for (size_t i = 0; i < values.size(); ++i) t.data<uint8_t>()[i] = kernels::host_f32_to_e4m3(values[i] / scale);
  t.set_tensor_scale(scale);
  return t;
}

double nmse(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    num += double(got[i] - want[i]) * double(got[i] - want[i]);
    den += double(want[i]) * double(want[i]);
  }
  return den > 0 ? num / den : num;
}

TEST(KvCacheFp8Gpu, TheFlagMakesTheCacheE4m3WithItsScales) {
  TROUPE_REQUIRE_GPU();
  auto gpu = make_gpu(DType::bf16, true);
  ASSERT_TRUE(gpu);
  EXPECT_EQ(gpu->kv_cache_dtype(), DType::f8_e4m3);
  KvCacheSpec spec{2, 3, 16, DType::f8_e4m3, {{"k", 4, 64}, {"v", 4, 64}}, {0.5f, 0.25f, 2.0f, 4.0f}};
  auto cache = gpu->create_kv_cache(spec);
  ASSERT_TRUE(cache.ok()) << cache.error().message;
  EXPECT_EQ(cache->component(1, 1).tensor_scale(), 4.0f);
  EXPECT_EQ(cache->component(0, 0).nbytes(), 3 * 16 * 4 * 64);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(cache->component(1, 0).raw()) % 16, 0u);
  spec.scales = {1.0f, -1.0f, 1.0f, 1.0f};
  EXPECT_FALSE(gpu->create_kv_cache(spec).ok());
  EXPECT_TRUE(gpu->set_fp8_kv_cache(false).ok());
  EXPECT_EQ(gpu->kv_cache_dtype(), DType::bf16);
}

// CudaBackend::write_kv into an fp8 component: the CPU backend's bytes exactly (the same division
// and the same saturating nearest-even rounding).
TEST(KvCacheFp8Gpu, WriteKvMatchesTheCpuBytes) {
  TROUPE_REQUIRE_GPU();
  auto gpu = make_gpu(DType::bf16, true);
  ASSERT_TRUE(gpu);
  CpuBackend cpu(2);
  ASSERT_TRUE(cpu.set_fp8_kv_cache(true).ok());
  const int64_t n = 37, heads = 4, dim = 64, slots = 64;
  std::mt19937 rng(17);
  std::normal_distribution<float> normal(0.0f, 4.0f);  // some saturate at 448 * 0.0191 = 8.6
  std::vector<float> x(size_t(n * heads * dim));
  for (float& v : x) v = normal(rng);
  std::vector<int32_t> slot(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) slot[size_t(t)] = int32_t((t * 7 + 3) % slots);
  Tensor host_cache = Tensor::zeros(DType::f8_e4m3, {slots / 16, 16, heads, dim});
  host_cache.set_tensor_scale(kKScale);
  Tensor gpu_cache = copy_to_gpu(*gpu, host_cache);
  const Tensor xs = Tensor::from_f32(x, {n, heads, dim}), slot_t = Tensor::from_i32(slot, {n});
  cpu.write_kv(host_cache, xs, slot_t);
  gpu->write_kv(gpu_cache, copy_to_gpu(*gpu, xs), slot_t);
  const Tensor back = gpu->to_host(gpu_cache);
  ASSERT_TRUE(gpu->status().ok()) << gpu->status().error().message;
  EXPECT_EQ(std::memcmp(back.raw(), host_cache.raw(), host_cache.nbytes()), 0);
}

// CudaBackend::paged_attention over fp8 caches, a mixed batch (prefill chunks on the tensor-core
// kernel with bf16 weights, decode tokens on the split-KV kernel) and a decode-only one (split-KV
// only, fp32 throughout), against the CPU backend's fp8 attention. Tolerances: the op table's
// (2e-4 NMSE with the prefill kernel's bf16 roundings of q and P, 1e-9 in fp32). A scale not
// applied (or applied twice) gives an NMSE near 1.
TEST(KvCacheFp8Gpu, PagedAttentionMatchesTheCpuFp8Path) {
  TROUPE_REQUIRE_GPU();
  auto gpu = make_gpu(DType::bf16, true);
  ASSERT_TRUE(gpu);
  CpuBackend cpu(2);
  ASSERT_TRUE(cpu.set_fp8_kv_cache(true).ok());
  struct Case {
    std::vector<std::pair<int32_t, int32_t>> seqs;
    int64_t heads, kv_heads, dim;
    double tolerance;
  };
  const Case cases[] = {
      {{{300, 45}, {1030, 1}, {19, 19}}, 8, 2, 128, 2e-4},
      {{{129, 19}, {40, 1}}, 16, 2, 256, 2e-4},
      {{{2500, 1}, {700, 1}, {129, 1}}, 12, 3, 128, 1e-9},
      {{{90, 1}, {50, 1}}, 6, 2, 48, 1e-9},  // head_dim 48: the fallback kernel
  };
  std::mt19937 rng(99);
  for (const Case& c : cases) {
    SCOPED_TRACE("heads " + std::to_string(c.heads) + " head_dim " + std::to_string(c.dim));
    PagedKv kv = make_paged_kv(c.seqs, c.kv_heads, c.dim, 16, rng);
    std::vector<float> q(size_t(kv.num_tokens * c.heads * c.dim));
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& v : q) v = normal(rng);
    const Tensor k8 = to_fp8(kv.k, kv.shape, kKScale), v8 = to_fp8(kv.v, kv.shape, kVScale);
    const Tensor qs = Tensor::from_f32(q, {kv.num_tokens, c.heads, c.dim});
    const float scale = 1.0f / std::sqrt(float(c.dim));
    Tensor want = Tensor::empty(DType::f32, {kv.num_tokens, c.heads, c.dim});
    cpu.paged_attention(qs, k8, v8, kv.meta, scale, want);
    Tensor out = gpu->empty(DType::f32, {kv.num_tokens, c.heads, c.dim});
    gpu->paged_attention(copy_to_gpu(*gpu, qs), copy_to_gpu(*gpu, k8), copy_to_gpu(*gpu, v8),
                         gpu->upload_metadata(kv.meta), scale, out);
    const Tensor got = gpu->to_host(out);
    ASSERT_TRUE(gpu->status().ok()) << gpu->status().error().message;
    const double e = nmse(got.to_f32_vector(), want.to_f32_vector());
    std::printf("fp8 cache attention, %zu seqs, head_dim %lld: NMSE %.3e (tolerance %.0e)\n", c.seqs.size(),
                (long long)c.dim, e, c.tolerance);
    EXPECT_LE(e, c.tolerance);
  }
}

// The dense fixtures on the GPU: fp8 cache against the auto (bf16, or fp32) cache, the claim the
// CPU test asserts: rows whose auto top-1 margin exceeds 2 * 2^-4 of the logits' range keep their
// argmax, and the fp8 greedy continuation keeps the auto one up to its first step without such a
// margin. The figures are printed.
void check_fixtures(DType weights) {
  const auto make = [weights](bool fp8) -> std::unique_ptr<Backend> {
    auto created = CudaBackend::create(0, weights);
    if (!created.ok() || !created.value()->set_fp8_kv_cache(fp8).ok()) return nullptr;
    return std::move(created.value());
  };
  const auto results = kv_fp8::measure_all(troupe_source_dir(), make);
  ASSERT_GE(results.size(), 8u);
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.error().message;
    const kv_fp8::Accuracy& a = r.value();
    SCOPED_TRACE(a.name);
    std::printf("gpu %s fp8 KV %-18s rows %5lld: max |dlogit| %.3e (%.2f x 2^-4 * max |logit| %.3f), top-1 "
                "%lld/%lld, clear rows %lld/%lld, greedy tokens %lld/%lld\n",
                weights == DType::bf16 ? "bf16" : "f32", a.name.c_str(), (long long)a.rows, a.max_abs_diff,
                a.max_abs_diff / a.bound(), a.max_abs_logit, (long long)a.top1_agree, (long long)a.rows,
                (long long)a.clear_agree, (long long)a.clear_rows, (long long)a.greedy_agree,
                (long long)a.greedy_tokens);
    EXPECT_GT(a.max_abs_diff, 0.0);
    EXPECT_EQ(a.clear_agree, a.clear_rows);
    EXPECT_EQ(a.greedy_shortfall, 0);
  }
}

TEST(KvCacheFp8Gpu, FixturesKeepClearArgmaxesBf16Weights) {
  TROUPE_REQUIRE_GPU();
  check_fixtures(DType::bf16);
}

TEST(KvCacheFp8Gpu, FixturesKeepClearArgmaxesF32Weights) {
  TROUPE_REQUIRE_GPU();
  check_fixtures(DType::f32);
}

}  // namespace
}  // namespace troupe::cuda
