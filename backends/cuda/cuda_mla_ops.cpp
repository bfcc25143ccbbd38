// CudaBackend's DeepSeek-V3 ops (contracts in runtime/backend.hpp): the interleaved rope, the MLA
// latent cache write, MLA paged attention (decode tokens absorbed, prefill chunks expanded: R1's
// dims with bf16 weights on the tensor-core flash kernel, the rest on the fp32 SIMT one) and
// the MoE combine. Weights fp32 (exact fp32 products) or bf16 (the products' inputs rounded to
// bf16, fp32 accumulation: at up to 8 decode tokens kernels/mla_absorb.hpp's weight-streaming
// kernels, else cuBLAS); caches fp32 or bf16.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/env_switch.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/gather_rows.hpp"
#include "kernels/mla_absorb.hpp"
#include "kernels/mla_decode.hpp"
#include "kernels/mla_latent.hpp"
#include "kernels/mla_prefill.hpp"
#include "kernels/scatter_rows.hpp"

namespace troupe::cuda {
using namespace kernels;

void CudaBackend::rope_interleaved(Tensor x, const Tensor& positions, const Tensor& inv_freq, float scale) {
  Tensor d_pos = on_device(positions);
  if (replaying()) return;
  const int64_t n = positions.numel(), head_dim = x.size(-1);
  if (n == 0) return;
  check(launch_rope_interleaved_f32(x.data<float>(), d_pos.data<int32_t>(), inv_freq.data<float>(), n,
                                    x.numel() / (n * head_dim), head_dim, inv_freq.numel(), scale, stream()),
        "rope_interleaved");
}

// One launch for both where the rope takes its one-warp-a-row kernel (kernels/mla_latent.hpp);
// TROUPE_MLA_ROPE_WRITE_FUSED=0 keeps the two (the A/B switch, read at each call).
void CudaBackend::mla_rope_and_write_latent(Tensor q, const Tensor& kv_a, const Tensor& norm_weight, float eps,
                                            const Tensor& positions, const Tensor& inv_freq, float scale,
                                            const Tensor& slot_mapping, Tensor cache) {
  const int64_t n = positions.numel(), half = inv_freq.numel(), head_dim = q.size(-1);
  const bool fused = n > 0 && half >= 1 && half <= 128 && q.dtype() == DType::f32 && kv_a.dtype() == DType::f32 &&
                     (cache.dtype() == DType::bf16 || cache.dtype() == DType::f32) &&
                     !env_is("TROUPE_MLA_ROPE_WRITE_FUSED", "0");
  if (!fused) {
    Backend::mla_rope_and_write_latent(q, kv_a, norm_weight, eps, positions, inv_freq, scale, slot_mapping, cache);
    return;
  }
  Tensor d_pos = on_device(positions), d_slots = on_device(slot_mapping);
  if (replaying()) return;
  const int64_t q_heads = q.numel() / (n * head_dim), kv_lora = norm_weight.numel();
  const cudaError_t err =
      cache.dtype() == DType::bf16
          ? launch_mla_rope_write_latent_f32(q.data<float>(), q_heads, head_dim, kv_a.data<float>(),
                                             norm_weight.data<float>(), eps, d_pos.data<int32_t>(),
                                             inv_freq.data<float>(), scale, d_slots.data<int32_t>(), n, kv_lora, half,
                                             cache.data<uint16_t>(), stream())
          : launch_mla_rope_write_latent_f32(q.data<float>(), q_heads, head_dim, kv_a.data<float>(),
                                             norm_weight.data<float>(), eps, d_pos.data<int32_t>(),
                                             inv_freq.data<float>(), scale, d_slots.data<int32_t>(), n, kv_lora, half,
                                             cache.data<float>(), stream());
  check(err, "mla_rope_write_latent");
}

void CudaBackend::mla_write_latent(const Tensor& kv_a, const Tensor& norm_weight, float eps, const Tensor& positions,
                                   const Tensor& inv_freq, float scale, const Tensor& slot_mapping, Tensor cache) {
  Tensor d_pos = on_device(positions), d_slots = on_device(slot_mapping);
  if (replaying()) return;
  const int64_t n = positions.numel(), kv_lora = norm_weight.numel(), half = inv_freq.numel();
  if (cache.dtype() == DType::bf16) {
    check(launch_mla_write_latent_f32(kv_a.data<float>(), norm_weight.data<float>(), eps, d_pos.data<int32_t>(),
                                      inv_freq.data<float>(), scale, d_slots.data<int32_t>(), n, kv_lora, half,
                                      cache.data<uint16_t>(), stream()),
          "mla_write_latent");
    return;
  }
  check(launch_mla_write_latent_f32(kv_a.data<float>(), norm_weight.data<float>(), eps, d_pos.data<int32_t>(),
                                    inv_freq.data<float>(), scale, d_slots.data<int32_t>(), n, kv_lora, half,
                                    cache.data<float>(), stream()),
        "mla_write_latent");
}

void CudaBackend::mla_paged_attention(const Tensor& q, const Tensor& cache, const Tensor& kv_b_weight,
                                      const AttentionMetadata& meta, float scale, Tensor out) {
  if (meta.num_tokens == 0 || replaying()) return;
  const int64_t num_seqs = meta.num_seqs, entry = cache.size(-1), kv_lora = kv_b_weight.size(1);
  const int64_t rope = entry - kv_lora, nope = q.size(2) - rope, v_dim = out.size(2);
  if (in_graph()) {
    // A recorded step holds only decode tokens (backends/graphed_model.hpp), and its launches may not
    // depend on this step's contexts: the partitions split each token's own context evenly (none
    // shorter than kMlaMinPartitionKeys), their count set by the block tables' width (the graph's
    // longest context).
    for (size_t s = 0; s + 1 < query_start_host_.size(); ++s)
      if (query_start_host_[s + 1] - query_start_host_[s] != 1) {
        graphs_.fail("a recorded step holds a prefill");
        return;
      }
    if (!mla_decode_supports(kv_lora, rope) || (cache.dtype() != DType::f32 && cache.dtype() != DType::bf16)) {
      graphs_.fail("MLA attention of these dims is not recorded in step graphs");
      return;
    }
    std::vector<int32_t> tokens(size_t(meta.num_tokens));
    for (size_t t = 0; t < tokens.size(); ++t) tokens[t] = int32_t(t);
    mla_decode_absorbed(q, cache, kv_b_weight, meta, scale, tokens, out, /*per_token_partitions=*/true);
    return;
  }
  if ((cache.dtype() != DType::f32 && cache.dtype() != DType::bf16) ||
      int64_t(query_start_host_.size()) != num_seqs + 1 || !mla_prefill_supports(nope, rope, v_dim)) {
    check(cudaErrorInvalidValue, "mla_paged_attention (f32/bf16 cache, metadata from upload_metadata, qk and v "
                                 "dims <= 256)");
    return;
  }
  const bool absorbed = mla_decode_supports(kv_lora, rope);
  std::vector<int32_t> decode_tokens, prefill_seqs;
  for (int64_t s = 0; s < num_seqs; ++s) {
    const int32_t begin = query_start_host_[size_t(s)], num_new = query_start_host_[size_t(s + 1)] - begin;
    if (num_new == 1 && absorbed) {
      decode_tokens.push_back(begin);
    } else if (num_new > 0) {
      prefill_seqs.push_back(int32_t(s));
    }
  }
  if (!prefill_seqs.empty()) mla_prefill_expanded(q, cache, kv_b_weight, meta, scale, prefill_seqs, out);
  if (!decode_tokens.empty())
    mla_decode_absorbed(q, cache, kv_b_weight, meta, scale, decode_tokens, out, /*per_token_partitions=*/false);
}

void CudaBackend::mla_decode_absorbed(const Tensor& q, const Tensor& cache, const Tensor& kv_b_weight,
                                      const AttentionMetadata& meta, float scale,
                                      const std::vector<int32_t>& decode_tokens, Tensor out,
                                      bool per_token_partitions) {
  const int64_t num_heads = q.size(1), qk = q.size(2), v_dim = out.size(2), entry = cache.size(-1);
  const int64_t kv_lora = kv_b_weight.size(1), rope = entry - kv_lora, nope = qk - rope;
  const int64_t d = int64_t(decode_tokens.size());
  const bool all = d == meta.num_tokens;  // then decode_tokens is 0 .. n-1
  // One token with a bf16 weight: kernels/mla_absorb.hpp's weight-streaming products, which read q
  // and write out at the tokens' rows themselves (no gather, no scatter, no bf16 copies). They take
  // up to 8 tokens, but on the H200 at R1's shape cuBLAS was faster at 8 (absorb 8.2 us against
  // 11.3, unabsorb 8.0 against 17.0) while they won at 1 (7.7 against 8.1, 6.8 against 8.1).
  const bool streamed = d == 1 && kv_b_weight.dtype() == DType::bf16 &&
                        mla_absorb_supports(kv_b_weight.raw(), d, nope, rope, kv_lora, v_dim);
  Tensor q_d = q, d_tokens;
  if (!all) d_tokens = on_device(Tensor::from_i32(decode_tokens, {d}));
  const int32_t* tokens = all ? nullptr : d_tokens.data<int32_t>();
  Tensor q_abs = scratch(DType::f32, {d, num_heads, entry});
  if (streamed) {
    check(launch_mla_absorb_q_bf16(q.data<float>(), tokens, kv_b_weight.data<uint16_t>(), q_abs.data<float>(), d,
                                   num_heads, nope, rope, kv_lora, v_dim, stream()),
          "mla_absorb_q");
  } else {
    if (!all) {
      q_d = scratch(DType::f32, {d, num_heads, qk});
      check(launch_gather_rows_f32(q.data<float>(), tokens, q_d.data<float>(), d, num_heads * qk, stream()),
            "gather_rows");
    }
    mla_absorb_q(q_d, kv_b_weight, q_abs);
  }
  // The latent attention streams little at decode sizes: the unabsorb's half of kv_b may move into
  // L2 meanwhile (the absorb's half is there already). A no-op unless a step graph records.
  if (d <= kPrefetchMaxTokens) prefetch_weight(kv_b_weight);
  int64_t max_context = 1;
  if (per_token_partitions) {
    max_context = std::max<int64_t>(1, meta.max_blocks_per_seq * meta.block_size);
  } else {
    for (size_t s = 0; s < context_lens_host_.size(); ++s)
      if (query_start_host_[s + 1] - query_start_host_[s] == 1)
        max_context = std::max<int64_t>(max_context, context_lens_host_[s]);
  }
  const int64_t parts = mla_decode_num_partitions(d, num_heads, max_context, num_sms_);
  const int64_t floats = mla_decode_workspace_floats(d, num_heads, kv_lora, parts);
  Tensor workspace = floats > 0 ? scratch(DType::f32, {floats}) : Tensor();
  Tensor o_lat = scratch(DType::f32, {d, num_heads, kv_lora});
  // Split contexts into the streamed unabsorb: its staging merges the partials (the combine kernel's
  // arithmetic, one launch fewer a layer); TROUPE_MLA_MERGE_IN_UNABSORB=0 keeps the combine (A/B).
  const bool merge_in_unabsorb = streamed && parts > 1 && !env_is("TROUPE_MLA_MERGE_IN_UNABSORB", "0");
  auto run = [&](const auto* c) {
    check(launch_mla_decode_f32(q_abs.data<float>(), c, meta.positions.data<int32_t>(), seq_of_token_.data<int32_t>(),
                                tokens, d, meta.block_tables.data<int32_t>(), meta.max_blocks_per_seq,
                                meta.block_size, num_heads, kv_lora, rope, scale, parts,
                                per_token_partitions ? 0 : mla_decode_partition_keys(max_context, parts),
                                floats > 0 ? workspace.data<float>() : nullptr, o_lat.data<float>(), stream(),
                                !merge_in_unabsorb),
          "mla_decode");
  };
  if (cache.dtype() == DType::bf16) {
    run(cache.data<uint16_t>());
  } else {
    run(cache.data<float>());
  }
  if (merge_in_unabsorb) {
    check(launch_mla_unabsorb_partials_bf16(workspace.data<float>(), parts, tokens, kv_b_weight.data<uint16_t>(),
                                            out.data<float>(), d, num_heads, nope, kv_lora, v_dim, stream()),
          "mla_unabsorb_out");
    return;
  }
  if (streamed) {
    check(launch_mla_unabsorb_out_bf16(o_lat.data<float>(), tokens, kv_b_weight.data<uint16_t>(), out.data<float>(),
                                       d, num_heads, nope, kv_lora, v_dim, stream()),
          "mla_unabsorb_out");
    return;
  }
  if (all) {
    mla_unabsorb_out(o_lat, kv_b_weight, nope, out);
    return;
  }
  Tensor out_d = scratch(DType::f32, {d, num_heads, v_dim});
  mla_unabsorb_out(o_lat, kv_b_weight, nope, out_d);
  check(launch_scatter_rows_f32(out_d.data<float>(), tokens, out.data<float>(), d, num_heads * v_dim, stream()),
        "scatter_rows");
}

void CudaBackend::mla_prefill_expanded(const Tensor& q, const Tensor& cache, const Tensor& kv_b_weight,
                                       const AttentionMetadata& meta, float scale, const std::vector<int32_t>& seqs,
                                       Tensor out) {
  const int64_t qk = q.size(2), v_dim = out.size(2), entry = cache.size(-1);
  const int64_t kv_lora = kv_b_weight.size(1), rope = entry - kv_lora, nope = qk - rope;
  if (cache.dtype() == DType::bf16 && kv_b_weight.dtype() == DType::bf16 && mla_prefill_mma_supports(nope, rope, v_dim)) {
    mla_prefill_tensor_cores(q, cache, kv_b_weight, meta, scale, seqs, out);
    return;
  }
  for (int32_t s : seqs) mla_prefill_simt(q, cache, kv_b_weight, meta, scale, s, out);
}

// R1's dims with bf16 weights and cache: the sequences' cached latents gathered (bf16) into one
// dense block per group, expanded by one bf16 GEMM into kv [keys, H * (nope + v)] bf16, then one
// flash-attention launch over every query tile of the group (kernels/mla_prefill_wgmma.cu on
// Hopper, kernels/mla_prefill_mma.cu elsewhere).
void CudaBackend::mla_prefill_tensor_cores(const Tensor& q, const Tensor& cache, const Tensor& kv_b_weight,
                                           const AttentionMetadata& meta, float scale,
                                           const std::vector<int32_t>& seqs, Tensor out) {
  // NOTE: the expanded keys cost H * (nope + v) * 2 bytes each (64 KiB at R1's dims): groups of
  // sequences hold at most this many keys (1 GiB), one longer sequence goes alone.
  constexpr int64_t kMaxExpandedKeys = 16384;
  const int64_t num_heads = q.size(1), qk = q.size(2), v_dim = out.size(2), entry = cache.size(-1);
  const int64_t kv_lora = kv_b_weight.size(1), rope = entry - kv_lora, nope = qk - rope;
  const int64_t kv_width = num_heads * (nope + v_dim);
  auto* h = static_cast<cublasHandle_t>(cublas_);
  size_t next = 0;
  while (next < seqs.size()) {
    std::vector<MlaPrefillSeq> group;
    int64_t num_keys = 0;
    for (; next < seqs.size(); ++next) {
      const size_t s = size_t(seqs[next]);
      const int64_t ctx = context_lens_host_[s];
      if (!group.empty() && num_keys + ctx > kMaxExpandedKeys) break;
      group.push_back({query_start_host_[s], query_start_host_[s + 1] - query_start_host_[s], ctx, num_keys});
      num_keys += ctx;
    }
    Tensor latent = scratch(DType::bf16, {num_keys, kv_lora}), k_pe = scratch(DType::bf16, {num_keys, rope});
    for (size_t k = 0; k < group.size(); ++k) {
      const int64_t s = seqs[next - group.size() + k];
      const int32_t* table = meta.block_tables.data<int32_t>() + s * meta.max_blocks_per_seq;
      check(launch_mla_gather_latent_bf16(cache.data<uint16_t>(), table, meta.block_size, group[k].ctx, kv_lora,
                                          rope, latent.data<uint16_t>() + group[k].key_begin * kv_lora,
                                          k_pe.data<uint16_t>() + group[k].key_begin * rope, stream()),
            "mla_gather_latent");
    }
    // Row-major kv [keys, H (nope + v)] = latent [keys, kv_lora] @ W^T: column-major kv^T = W^T(op T) latent^T.
    Tensor kv = scratch(DType::bf16, {num_keys, kv_width});
    const float alpha = 1.0f, beta = 0.0f;
    check_cublas(int(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(kv_width), int(num_keys), int(kv_lora), &alpha,
                                  kv_b_weight.raw(), CUDA_R_16BF, int(kv_lora), latent.raw(), CUDA_R_16BF,
                                  int(kv_lora), &beta, kv.raw(), CUDA_R_16BF, int(kv_width), CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT)));
    // Hopper: the wgmma kernel over 64-row tiles. Elsewhere, or with TROUPE_MLA_PREFILL_WGMMA=0 (a
    // diagnostic for A/B runs, read at each call), the mma.sync kernel over 128-row tiles.
    const char* wgmma_env = std::getenv("TROUPE_MLA_PREFILL_WGMMA");
    const bool try_wgmma = !(wgmma_env && std::strcmp(wgmma_env, "0") == 0);
    auto attend = [&](bool wgmma) {
      const int64_t rows = wgmma ? kMlaPrefillWgmmaTileRows : kMlaPrefillTileRows;
      const std::vector<int32_t> tiles = mla_prefill_tiles(group, rows);
      if (tiles.empty()) {  // recorded as the step's fault; nothing launched
        check(cudaErrorInvalidValue, "mla_prefill_tiles (a sequence with more new tokens than context)");
        return cudaSuccess;
      }
      const int64_t num_tiles = int64_t(tiles.size()) / 4;
      Tensor d_tiles = on_device(Tensor::from_i32(tiles, {num_tiles * 4}));
      return wgmma ? launch_mla_prefill_wgmma(q.data<float>(), kv.data<uint16_t>(), k_pe.data<uint16_t>(),
                                              d_tiles.data<int32_t>(), num_tiles, rows, num_heads, nope, rope, v_dim,
                                              scale, out.data<float>(), stream())
                   : launch_mla_prefill_mma(q.data<float>(), kv.data<uint16_t>(), k_pe.data<uint16_t>(),
                                            d_tiles.data<int32_t>(), num_tiles, rows, num_heads, nope, rope, v_dim,
                                            scale, out.data<float>(), stream());
    };
    cudaError_t err = try_wgmma ? attend(true) : cudaErrorNotSupported;
    if (err == cudaErrorNotSupported) err = attend(false);
    check(err, "mla_prefill_attention");
  }
}

// Other dims, or fp32 weights / cache: one sequence at a time, fp32 kv, the SIMT kernel (exact fp32).
void CudaBackend::mla_prefill_simt(const Tensor& q, const Tensor& cache, const Tensor& kv_b_weight,
                                   const AttentionMetadata& meta, float scale, int64_t s, Tensor out) {
  const int64_t num_heads = q.size(1), qk = q.size(2), v_dim = out.size(2), entry = cache.size(-1);
  const int64_t kv_lora = kv_b_weight.size(1), rope = entry - kv_lora, nope = qk - rope;
  const int64_t ctx = context_lens_host_[size_t(s)], begin = query_start_host_[size_t(s)];
  const int64_t num_new = query_start_host_[size_t(s + 1)] - begin;
  Tensor latent = scratch(DType::f32, {ctx, kv_lora}), k_pe = scratch(DType::f32, {ctx, rope});
  const int32_t* table = meta.block_tables.data<int32_t>() + s * meta.max_blocks_per_seq;
  if (cache.dtype() == DType::bf16) {
    check(launch_mla_gather_latent_f32(cache.data<uint16_t>(), table, meta.block_size, ctx, kv_lora, rope,
                                       latent.data<float>(), k_pe.data<float>(), stream()),
          "mla_gather_latent");
  } else {
    check(launch_mla_gather_latent_f32(cache.data<float>(), table, meta.block_size, ctx, kv_lora, rope,
                                       latent.data<float>(), k_pe.data<float>(), stream()),
          "mla_gather_latent");
  }
  Tensor kv = scratch(DType::f32, {ctx, num_heads * (nope + v_dim)});
  linear(latent, kv_b_weight, Tensor(), kv);
  check(launch_mla_prefill_attention_f32(q.data<float>() + begin * num_heads * qk, kv.data<float>(),
                                         k_pe.data<float>(), num_new, ctx, num_heads, nope, rope, v_dim, scale,
                                         out.data<float>() + begin * num_heads * v_dim, stream()),
        "mla_prefill_attention");
}

// The cuBLAS products (fp32 weights, or more than 8 decode tokens; mla_decode_absorbed streams
// bf16 weights itself below that). Per head h (the batch of the strided products), column-major:
// q_abs_h^T [kv_lora, n] = W_UK_h^T [kv_lora, nope] (row-major W_UK_h, ld kv_lora) @ q_nope_h^T
// [nope, n] (ld H * qk).
void CudaBackend::mla_absorb_q(const Tensor& q, const Tensor& kv_b_weight, Tensor q_abs) {
  const int64_t n = q.size(0), num_heads = q.size(1), qk = q.size(2), entry = q_abs.size(2);
  const int64_t kv_lora = kv_b_weight.size(1), rope = entry - kv_lora, nope = qk - rope;
  const int64_t per_head = kv_b_weight.size(0) / num_heads;  // nope + v
  const float alpha = 1.0f, beta = 0.0f;
  auto* h = static_cast<cublasHandle_t>(cublas_);
  cublasStatus_t st;
  if (kv_b_weight.dtype() == DType::bf16) {
    Tensor q16 = scratch(DType::bf16, {n, num_heads, qk});
    check(launch_f32_to_bf16(q.data<float>(), q16.data<uint16_t>(), q.numel(), stream()), "f32_to_bf16");
    st = cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, int(kv_lora), int(n), int(nope), &alpha,
                                    kv_b_weight.raw(), CUDA_R_16BF, int(kv_lora), per_head * kv_lora, q16.raw(),
                                    CUDA_R_16BF, int(num_heads * qk), qk, &beta, q_abs.raw(), CUDA_R_32F,
                                    int(num_heads * entry), entry, int(num_heads), CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT);
  } else {
    st = cublasSgemmStridedBatched(h, CUBLAS_OP_N, CUBLAS_OP_N, int(kv_lora), int(n), int(nope), &alpha,
                                   kv_b_weight.data<float>(), int(kv_lora), per_head * kv_lora, q.data<float>(),
                                   int(num_heads * qk), qk, &beta, q_abs.data<float>(), int(num_heads * entry), entry,
                                   int(num_heads));
  }
  check_cublas(int(st));
  if (rope > 0)  // q_pe as it is, after the latent part
    check(cudaMemcpy2DAsync(q_abs.data<float>() + kv_lora, size_t(entry) * sizeof(float), q.data<float>() + nope,
                            size_t(qk) * sizeof(float), size_t(rope) * sizeof(float), size_t(n * num_heads),
                            cudaMemcpyDeviceToDevice, stream()),
          "mla q_pe copy");
}

// Per head h, column-major: out_h^T [v, n] = (W_UV_h^T)^T [v, kv_lora] (row-major W_UV_h, ld kv_lora,
// transposed) @ o_lat_h^T [kv_lora, n] (ld H * kv_lora).
void CudaBackend::mla_unabsorb_out(const Tensor& o_lat, const Tensor& kv_b_weight, int64_t nope, Tensor out) {
  const int64_t n = o_lat.size(0), num_heads = o_lat.size(1), kv_lora = o_lat.size(2), v_dim = out.size(2);
  const int64_t per_head = nope + v_dim;
  const float alpha = 1.0f, beta = 0.0f;
  auto* h = static_cast<cublasHandle_t>(cublas_);
  cublasStatus_t st;
  if (kv_b_weight.dtype() == DType::bf16) {
    Tensor o16 = scratch(DType::bf16, {n, num_heads, kv_lora});
    check(launch_f32_to_bf16(o_lat.data<float>(), o16.data<uint16_t>(), o_lat.numel(), stream()), "f32_to_bf16");
    st = cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(v_dim), int(n), int(kv_lora), &alpha,
                                    kv_b_weight.data<uint16_t>() + nope * kv_lora, CUDA_R_16BF, int(kv_lora),
                                    per_head * kv_lora, o16.raw(), CUDA_R_16BF, int(num_heads * kv_lora), kv_lora,
                                    &beta, out.raw(), CUDA_R_32F, int(num_heads * v_dim), v_dim, int(num_heads),
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  } else {
    st = cublasSgemmStridedBatched(h, CUBLAS_OP_T, CUBLAS_OP_N, int(v_dim), int(n), int(kv_lora), &alpha,
                                   kv_b_weight.data<float>() + nope * kv_lora, int(kv_lora), per_head * kv_lora,
                                   o_lat.data<float>(), int(num_heads * kv_lora), kv_lora, &beta, out.data<float>(),
                                   int(num_heads * v_dim), v_dim, int(num_heads));
  }
  check_cublas(int(st));
}

void CudaBackend::add_rows_scaled(const Tensor& x, const std::vector<int32_t>& rows, const std::vector<float>& weights,
                                  Tensor out) {
  if (rows.empty()) return;
  const int64_t m = int64_t(rows.size());
  Tensor d_rows = on_device(Tensor::from_i32(rows, {m})), d_weights = on_device(Tensor::from_f32(weights, {m}));
  Tensor dx = on_device(x);
  if (replaying()) return;
  std::vector<int32_t> sorted = rows;
  std::sort(sorted.begin(), sorted.end());
  const bool distinct = std::adjacent_find(sorted.begin(), sorted.end()) == sorted.end();
  check(launch_add_rows_scaled_f32(dx.data<float>(), d_rows.data<int32_t>(), d_weights.data<float>(),
                                   out.data<float>(), m, out.size(-1), distinct, stream()),
        "add_rows_scaled");
}

}  // namespace troupe::cuda
