// CudaBackend's attention over the paged K/V cache (contracts in runtime/backend.hpp): the step's
// prefill plan (query tiles of the sequences with several new tokens, then the decode tokens),
// prefill chunks on kernels/attention_prefill (mma.sync; kernels/attention_prefill_wgmma on Hopper
// when asked), single tokens on split-KV decode (kernels/attention_decode_mma over a bf16 cache,
// kernels/attention_decode otherwise), and kernels/paged_attention for shapes neither takes.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backends/cuda/cuda_backend.hpp"
#include "kernels/attention_decode.hpp"
#include "kernels/attention_decode_mma.hpp"
#include "kernels/attention_prefill.hpp"
#include "kernels/paged_attention.hpp"

namespace troupe::cuda {
using namespace kernels;

void CudaBackend::build_attention_plan(int64_t tokens_per_tile) {
  const int64_t num_seqs = int64_t(context_lens_host_.size());
  std::vector<int32_t> plan = build_prefill_tiles(query_start_host_.data(), context_lens_host_.data(), num_seqs, tokens_per_tile);
  plan_tiles_ = int64_t(plan.size() / 3);
  plan_decode_context_ = 0;
  for (int64_t s = 0; s < num_seqs; ++s) {
    if (query_start_host_[size_t(s + 1)] - query_start_host_[size_t(s)] != 1) continue;
    plan.push_back(query_start_host_[size_t(s)]);
    plan_decode_context_ = std::max<int64_t>(plan_decode_context_, context_lens_host_[size_t(s)]);
  }
  plan_decode_tokens_ = int64_t(plan.size()) - 3 * plan_tiles_;
  plan_ = on_device(Tensor::from_i32(plan, {int64_t(plan.size())}));
  plan_tokens_per_tile_ = tokens_per_tile;
}

void CudaBackend::decode_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                   const AttentionMetadata& meta, float scale, const int32_t* tokens,
                                   int64_t num_tokens, int64_t max_context, Tensor out,
                                   bool per_token_partitions) {
  if (num_tokens == 0) return;
  const int64_t head_dim = q.size(-1), num_heads = q.numel() / (meta.num_tokens * head_dim);
  const int64_t num_kv_heads = k_cache.size(2);
  // A bf16 cache of a supported GQA shape: the tensor-core kernel (same partition contract).
  const bool tensor_cores =
      k_cache.dtype() == DType::bf16 && decode_attention_mma_supports(num_heads, num_kv_heads, head_dim);
  const int64_t parts = tensor_cores
                            ? decode_mma_num_partitions(num_tokens, num_kv_heads, max_context, num_sms_)
                            : decode_num_partitions(num_tokens, num_heads, num_kv_heads, head_dim, max_context, num_sms_);
  const int64_t floats = decode_workspace_floats(num_tokens, num_heads, head_dim, parts);
  Tensor workspace = floats > 0 ? scratch(DType::f32, {floats}) : Tensor();  // freed stream-ordered
  const int64_t partition_keys = per_token_partitions ? 0 : decode_partition_keys(max_context, parts);
  if (tensor_cores) {
    check(launch_decode_attention_mma(q.data<float>(), k_cache.data<uint16_t>(), v_cache.data<uint16_t>(),
                                      meta.positions.data<int32_t>(), seq_of_token_.data<int32_t>(), tokens,
                                      num_tokens, meta.block_tables.data<int32_t>(), meta.max_blocks_per_seq,
                                      meta.block_size, num_heads, num_kv_heads, head_dim, scale, parts, partition_keys,
                                      floats > 0 ? workspace.data<float>() : nullptr, out.data<float>(), stream()),
          "decode_attention_mma");
    return;
  }
  auto run = [&](const auto* k, const auto* v) {
    check(launch_decode_attention_f32(q.data<float>(), k, v, meta.positions.data<int32_t>(),
                                      seq_of_token_.data<int32_t>(), tokens, num_tokens,
                                      meta.block_tables.data<int32_t>(), meta.max_blocks_per_seq, meta.block_size,
                                      num_heads, num_kv_heads, head_dim, scale, parts, partition_keys,
                                      floats > 0 ? workspace.data<float>() : nullptr, out.data<float>(), stream()),
          "decode_attention");
  };
  if (k_cache.dtype() == DType::f8_e4m3) {  // the split-KV kernel reads e4m3 (fp8 KV cache)
    check(launch_decode_attention_f32(q.data<float>(), k_cache.data<uint8_t>(), v_cache.data<uint8_t>(),
                                      meta.positions.data<int32_t>(), seq_of_token_.data<int32_t>(), tokens,
                                      num_tokens, meta.block_tables.data<int32_t>(), meta.max_blocks_per_seq,
                                      meta.block_size, num_heads, num_kv_heads, head_dim, scale,
                                      k_cache.tensor_scale(), v_cache.tensor_scale(), parts, partition_keys,
                                      floats > 0 ? workspace.data<float>() : nullptr, out.data<float>(), stream()),
          "decode_attention");
    return;
  }
  if (k_cache.dtype() == DType::bf16) {
    run(k_cache.data<uint16_t>(), v_cache.data<uint16_t>());
  } else {
    run(k_cache.data<float>(), v_cache.data<float>());
  }
}

// Prefill chunks (sequences with more than one new token) on tensor cores when the weights are
// bf16, single tokens in the split-KV kernels (decode_attention); shapes neither supports in the
// reference kernel.
void CudaBackend::paged_attention(const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                                  const AttentionMetadata& meta, float scale, Tensor out) {
  const int64_t n = meta.num_tokens, head_dim = q.size(-1);
  if (n == 0 || replaying()) return;
  if (k_cache.dtype() != v_cache.dtype() || !is_kv_cache_dtype(k_cache.dtype())) {
    check(cudaErrorInvalidValue, "paged_attention (K and V caches must both be f32, bf16 or f8_e4m3)");
    return;
  }
  const float k_scale = k_cache.tensor_scale(), v_scale = v_cache.tensor_scale();  // an fp8 cache's
  const int64_t num_heads = q.numel() / (n * head_dim), num_kv_heads = k_cache.size(2);
  const bool grouped = num_kv_heads > 0 && num_heads % num_kv_heads == 0;
  if (in_graph() && grouped && decode_attention_supports(head_dim)) {
    // A recorded step holds only decode tokens (backends/graphed_model.hpp); its launch may not
    // depend on this step's contexts, only on the block tables' width.
    for (size_t s = 0; s + 1 < query_start_host_.size(); ++s)
      if (query_start_host_[s + 1] - query_start_host_[s] != 1) graphs_.fail("a recorded step holds a prefill");
    decode_attention(q, k_cache, v_cache, meta, scale, nullptr, n, meta.max_blocks_per_seq * meta.block_size, out,
                     /*per_token_partitions=*/true);
    return;
  }
  if (!grouped || !decode_attention_supports(head_dim) || int64_t(context_lens_host_.size()) != meta.num_seqs) {
    auto run = [&](const auto* k, const auto* v) {
      check(launch_paged_attention_f32(q.data<float>(), k, v, meta.positions.data<int32_t>(),
                                       seq_of_token_.data<int32_t>(), meta.block_tables.data<int32_t>(),
                                       meta.max_blocks_per_seq, meta.block_size, n, num_heads, num_kv_heads, head_dim,
                                       scale, out.data<float>(), stream()),
            "paged_attention");
    };
    if (k_cache.dtype() == DType::f8_e4m3) {
      check(launch_paged_attention_f32(q.data<float>(), k_cache.data<uint8_t>(), v_cache.data<uint8_t>(),
                                       meta.positions.data<int32_t>(), seq_of_token_.data<int32_t>(),
                                       meta.block_tables.data<int32_t>(), meta.max_blocks_per_seq, meta.block_size, n,
                                       num_heads, num_kv_heads, head_dim, scale, k_scale, v_scale, out.data<float>(),
                                       stream()),
            "paged_attention");
    } else if (k_cache.dtype() == DType::bf16) {
      run(k_cache.data<uint16_t>(), v_cache.data<uint16_t>());
    } else {
      run(k_cache.data<float>(), v_cache.data<float>());
    }
    return;
  }
  const int64_t group = num_heads / num_kv_heads;
  if (tensor_core_attention_ && prefill_attention_supports(head_dim, group)) {
    const int64_t tokens_per_tile = prefill_tokens_per_tile(head_dim, group);
    if (plan_tokens_per_tile_ != tokens_per_tile) build_attention_plan(tokens_per_tile);
    const int32_t* plan = plan_.data<int32_t>();
    auto run = [&](const auto* k, const auto* v) {
      check(launch_prefill_attention_bf16(q.data<float>(), k, v, meta.positions.data<int32_t>(), plan, plan_tiles_,
                                          meta.block_tables.data<int32_t>(), meta.max_blocks_per_seq,
                                          meta.block_size, num_heads, num_kv_heads, head_dim, scale,
                                          out.data<float>(), stream()),
            "prefill_attention");
    };
    if (k_cache.dtype() == DType::f8_e4m3) {
      check(launch_prefill_attention_bf16(q.data<float>(), k_cache.data<uint8_t>(), v_cache.data<uint8_t>(),
                                          meta.positions.data<int32_t>(), plan, plan_tiles_,
                                          meta.block_tables.data<int32_t>(), meta.max_blocks_per_seq,
                                          meta.block_size, num_heads, num_kv_heads, head_dim, scale, k_scale, v_scale,
                                          out.data<float>(), stream()),
            "prefill_attention");
    } else if (k_cache.dtype() == DType::bf16) {
      // The mma.sync kernel: on the H200 it matches the wgmma kernel's two warpgroups per tile
      // (Llama-3-8B's 4,096-token prefill 107.6 ms with either) and beats one warpgroup per half
      // tile (111.2 ms). TROUPE_PREFILL_WGMMA=128 or =64 takes the wgmma kernel on Hopper at
      // head_dim 128 with that many rows a CTA (diagnostics for A/B runs, read at each call).
      const char* wgmma_env = std::getenv("TROUPE_PREFILL_WGMMA");
      const int64_t cta_rows = !wgmma_env                       ? 0
                               : std::strcmp(wgmma_env, "128") == 0 ? 128
                               : std::strcmp(wgmma_env, "64") == 0  ? 64
                                                                    : 0;
      const cudaError_t tried =
          cta_rows == 0 || !prefill_attention_wgmma_supports(head_dim, group)
              ? cudaErrorNotSupported
              : launch_prefill_attention_wgmma(q.data<float>(), k_cache.data<uint16_t>(), v_cache.data<uint16_t>(),
                                               meta.positions.data<int32_t>(), plan, plan_tiles_,
                                               meta.block_tables.data<int32_t>(), meta.max_blocks_per_seq,
                                               meta.block_size, num_heads, num_kv_heads, head_dim, scale,
                                               out.data<float>(), stream(), cta_rows);
      if (tried == cudaErrorNotSupported)
        run(k_cache.data<uint16_t>(), v_cache.data<uint16_t>());
      else
        check(tried, "prefill_attention_wgmma");
    } else {
      run(k_cache.data<float>(), v_cache.data<float>());
    }
    decode_attention(q, k_cache, v_cache, meta, scale, plan + 3 * plan_tiles_, plan_decode_tokens_,
                     plan_decode_context_, out);
    return;
  }
  decode_attention(q, k_cache, v_cache, meta, scale, nullptr, n, meta.max_context_len, out);
}

}  // namespace troupe::cuda
