#include "models/mla_attention.hpp"

#include "runtime/fp8_block.hpp"

namespace troupe {

Result<std::unique_ptr<MlaAttention>> MlaAttention::load(const ModelConfig& config, const std::string& prefix,
                                                         const WeightLoader& weights, Backend& backend,
                                                         Tensor inv_freq, float rope_scale, float softmax_scale) {
  std::unique_ptr<MlaAttention> layer(new MlaAttention(backend));
  const MlaConfig& m = config.mla;
  layer->mla_ = m;
  layer->num_heads_ = config.num_attention_heads;
  layer->eps_ = float(config.rms_norm_eps);
  layer->rope_scale_ = rope_scale;
  layer->softmax_scale_ = softmax_scale;
  layer->inv_freq_ = std::move(inv_freq);
  const int64_t hidden = config.hidden_size, heads = config.num_attention_heads;
  auto take = [&](const std::string& name, const std::vector<int64_t>& shape, Tensor* dst,
                  bool allow_fp8 = true) -> Status {
    auto w = load_weight(weights, backend, prefix + name, shape, allow_fp8);
    if (!w.ok()) return w.error();
    *dst = std::move(w.value());
    return Status::success();
  };
  if (m.q_lora_rank > 0) {
    if (m.q_lora_rank % kFp8BlockSize == 0) {
      // q_a and kv_a read the same x: loaded back to back (FP8 scale rows too, q_a being whole
      // 128-row blocks), so a backend may run both products in one launch (Backend::linear_pair).
      auto fused = load_fused_weight(weights, backend, {{prefix + "q_a_proj.weight", {m.q_lora_rank, hidden}},
                                                        {prefix + "kv_a_proj_with_mqa.weight", {m.cache_entry(), hidden}}});
      if (!fused.ok()) return fused.error();
      layer->q_a_weight_ = fused->rows(0, m.q_lora_rank);
      layer->kv_a_weight_ = fused->rows(m.q_lora_rank, m.cache_entry());
      if (fused->has_block_scale()) {
        const Tensor& scale = fused->block_scale();
        const int64_t q_blocks = m.q_lora_rank / kFp8BlockSize;
        layer->q_a_weight_.set_block_scale(scale.rows(0, q_blocks));
        layer->kv_a_weight_.set_block_scale(scale.rows(q_blocks, scale.size(0) - q_blocks));
      }
    } else {
      TROUPE_TRY(take("q_a_proj.weight", {m.q_lora_rank, hidden}, &layer->q_a_weight_));
      TROUPE_TRY(take("kv_a_proj_with_mqa.weight", {m.cache_entry(), hidden}, &layer->kv_a_weight_));
    }
    TROUPE_TRY(take("q_a_layernorm.weight", {m.q_lora_rank}, &layer->q_a_norm_));
    TROUPE_TRY(take("q_b_proj.weight", {heads * m.qk_head_dim(), m.q_lora_rank}, &layer->q_b_weight_));
  } else {
    TROUPE_TRY(take("q_proj.weight", {heads * m.qk_head_dim(), hidden}, &layer->q_weight_));
    TROUPE_TRY(take("kv_a_proj_with_mqa.weight", {m.cache_entry(), hidden}, &layer->kv_a_weight_));
  }
  TROUPE_TRY(take("kv_a_layernorm.weight", {m.kv_lora_rank}, &layer->kv_a_norm_));
  // kv_b_proj is read by the attention op (expanded or absorbed), not by linear: never FP8.
  TROUPE_TRY(take("kv_b_proj.weight", {heads * (m.qk_nope_head_dim + m.v_head_dim), m.kv_lora_rank},
                  &layer->kv_b_weight_, false));
  TROUPE_TRY(take("o_proj.weight", {hidden, heads * m.v_head_dim}, &layer->o_weight_));
  return layer;
}

std::vector<KvComponentSpec> MlaAttention::kv_components() const { return {{"latent", 1, mla_.cache_entry()}}; }

void MlaAttention::forward(const Tensor& x, const AttentionMetadata& meta, KvCache& cache, int64_t cache_layer,
                           Tensor out) {
  const int64_t n = meta.num_tokens, qk_head = mla_.qk_head_dim();
  Tensor q = backend_.empty(DType::f32, {n, num_heads_, qk_head});
  const Tensor q_flat = q.reshape({n, num_heads_ * qk_head});
  Tensor kv_a = backend_.empty(DType::f32, {n, mla_.cache_entry()});
  if (q_a_weight_.defined()) {
    Tensor q_a = backend_.empty(DType::f32, {n, mla_.q_lora_rank});
    backend_.linear_pair(x, q_a_weight_, kv_a_weight_, q_a, kv_a);
    backend_.rmsnorm_linear(q_a, q_a_norm_, eps_, q_b_weight_, q_flat);
  } else {
    backend_.linear(x, q_weight_, Tensor(), q_flat);
    backend_.linear(x, kv_a_weight_, Tensor(), kv_a);
  }
  Tensor& latent_cache = cache.component(cache_layer, 0);
  backend_.mla_rope_and_write_latent(q, kv_a, kv_a_norm_, eps_, meta.positions, inv_freq_, rope_scale_,
                                     meta.slot_mapping, latent_cache);
  Tensor attn = backend_.empty(DType::f32, {n, num_heads_, mla_.v_head_dim});
  backend_.mla_paged_attention(q, latent_cache, kv_b_weight_, meta, softmax_scale_, attn);
  backend_.linear(attn.reshape({n, num_heads_ * mla_.v_head_dim}), o_weight_, Tensor(), out);
}

}  // namespace troupe
