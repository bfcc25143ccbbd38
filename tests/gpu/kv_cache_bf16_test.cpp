// The bf16 KV cache of the CUDA backend (bf16 weights): its dtype and size follow the weights, and
// K and V caches of different dtypes are refused. The cache writers and every attention kernel over
// a bf16 cache are checked against their CPU references in the op table (backend_ops_test.cpp).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backends/cuda/cuda_backend.hpp"
#include "runtime/attention_metadata.hpp"
#include "runtime/dtype.hpp"
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

// A host bf16 tensor of the values rounded to nearest even (NaN stays NaN).
Tensor to_bf16(const std::vector<float>& values, std::vector<int64_t> shape) {
  Tensor t = Tensor::empty(DType::bf16, std::move(shape));
  for (size_t i = 0; i < values.size(); ++i) t.data<uint16_t>()[i] = f32_to_bf16(values[i]);
  return t;
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

// K and V caches of different dtypes are refused with an error naming the op, not misread.
TEST(KvCacheBf16, MixedCacheDtypesAreRefused) {
  TROUPE_REQUIRE_GPU();
  auto gpu = make_gpu(DType::bf16);
  ASSERT_TRUE(gpu);
  std::mt19937 rng(4242);
  PagedKv kv = make_paged_kv({{19, 19}}, 4, 128, 16, rng);
  std::vector<float> q(size_t(kv.num_tokens * 16 * 128), 0.5f);
  const AttentionMetadata meta = gpu->upload_metadata(kv.meta);
  Tensor out = gpu->empty(DType::f32, {kv.num_tokens, 16, 128});
  gpu->paged_attention(copy_to_gpu(*gpu, Tensor::from_f32(q, {kv.num_tokens, 16, 128})),
                       copy_to_gpu(*gpu, to_bf16(kv.k, kv.shape)), copy_to_gpu(*gpu, Tensor::from_f32(kv.v, kv.shape)),
                       meta, 0.1f, out);
  const std::string error = gpu->take_error();
  EXPECT_NE(error.find("paged_attention"), std::string::npos) << error;
}

}  // namespace
}  // namespace troupe::cuda
