#include "models/deepseek_model.hpp"

#include <cmath>

#include "models/mla_attention.hpp"
#include "models/moe.hpp"
#include "models/rope.hpp"
#include "runtime/attention_metadata.hpp"

namespace troupe {

Result<std::unique_ptr<DeepseekModel>> DeepseekModel::load(const ModelConfig& config, Backend& backend,
                                                           LayerRange range, const WeightLoader& weights) {
  if (config.architecture != "DeepseekV3ForCausalLM")
    return make_error(ErrorCode::unsupported, "DeepseekModel: unsupported architecture '" + config.architecture + "'");
  if (!backend.supports_mla_moe())
    return make_error(ErrorCode::unsupported,
                      "DeepseekV3ForCausalLM needs a backend with the MLA / MoE ops (cpu or cuda)");
  if (backend.kv_cache_dtype() == DType::f8_e4m3)
    return make_error(ErrorCode::unsupported,
                      "--kv-cache-dtype fp8: DeepSeek's MLA latent cache has no fp8 path yet; use "
                      "--kv-cache-dtype auto");
  if (range.end < 0) range.end = config.num_hidden_layers;
  if (range.begin < 0 || range.begin > range.end || range.end > config.num_hidden_layers) {
    return make_error(ErrorCode::invalid_argument,
                      "layer range [" + std::to_string(range.begin) + ", " + std::to_string(range.end) +
                          ") outside the model's " + std::to_string(config.num_hidden_layers) + " layers");
  }
  const MlaConfig& mla = config.mla;
  if (!mla.enabled() || mla.qk_rope_head_dim <= 0 || mla.qk_rope_head_dim % 2 != 0 || mla.v_head_dim <= 0)
    return make_error(ErrorCode::unsupported, "DeepseekModel: needs kv_lora_rank > 0, an even qk_rope_head_dim and "
                                              "v_head_dim > 0");
  std::unique_ptr<DeepseekModel> model(new DeepseekModel(config, backend, range));
  const int64_t hidden = config.hidden_size;
  const bool first = range.begin == 0, last = range.end == config.num_hidden_layers;
  auto vocab = VocabParallel::load(config, weights, backend, first, last);
  if (!vocab.ok()) return vocab.error();
  model->vocab_ = std::move(vocab.value());
  // RoPE over qk_rope_head_dim; YaRN as transformers 5.17 computes it: the configured factor, or the
  // position ratio (max_position_embeddings / original) where the config gives none. (Real R1
  // configs have both equal: 163840 / 4096 = 40.)
  const RopeScaling& scaling = config.rope_scaling;
  std::vector<float> inv_freq_host;
  float rope_scale = 1.0f;
  double softmax_scale = 1.0 / std::sqrt(double(mla.qk_head_dim()));
  if (scaling.type == "yarn") {
    const double factor = scaling.factor > 0.0 ? scaling.factor
                                               : double(config.max_position_embeddings) /
                                                     double(scaling.original_max_position_embeddings);
    inv_freq_host = yarn_inv_freq(mla.qk_rope_head_dim, config.rope_theta, factor, scaling);
    rope_scale = float(yarn_attention_factor(factor, scaling));
    // The softmax scale takes the configured factor (transformers' DeepseekV3Attention).
    if (scaling.mscale_all_dim != 0.0) {
      const double m = yarn_mscale(scaling.factor, scaling.mscale_all_dim);
      softmax_scale *= m * m;
    }
  } else {
    inv_freq_host = rope_inv_freq(mla.qk_rope_head_dim, config.rope_theta, scaling);
  }
  auto inv_freq = backend.upload_weight(Tensor::from_f32(inv_freq_host, {int64_t(inv_freq_host.size())}));
  if (!inv_freq.ok()) return inv_freq.error();
  ModelConfig dense_config = config;
  dense_config.mlp_bias = false;
  for (int64_t i = range.begin; i < range.end; ++i) {
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    DecoderLayer layer;
    auto in_norm = load_weight(weights, backend, prefix + "input_layernorm.weight", {hidden});
    if (!in_norm.ok()) return in_norm.error();
    auto post_norm = load_weight(weights, backend, prefix + "post_attention_layernorm.weight", {hidden});
    if (!post_norm.ok()) return post_norm.error();
    auto attention = MlaAttention::load(config, prefix + "self_attn.", weights, backend, inv_freq.value(), rope_scale,
                                        float(softmax_scale));
    if (!attention.ok()) return attention.error();
    layer.input_norm = std::move(in_norm.value());
    layer.post_attention_norm = std::move(post_norm.value());
    layer.attention = std::move(attention.value());
    if (config.moe.is_moe_layer(i)) {
      auto moe = MoeMlp::load(config, prefix + "mlp.", weights, backend);
      if (!moe.ok()) return moe.error();
      model->moe_layers_.push_back(moe.value().get());
      layer.mlp = std::move(moe.value());
    } else {
      auto mlp = LlamaMlp::load(dense_config, prefix + "mlp.", weights, backend);
      if (!mlp.ok()) return mlp.error();
      model->moe_layers_.push_back(nullptr);
      layer.mlp = std::move(mlp.value());
    }
    model->layers_.push_back(std::move(layer));
  }
  if (last) {
    auto norm = load_weight(weights, backend, "model.norm.weight", {hidden});
    if (!norm.ok()) return norm.error();
    model->final_norm_ = std::move(norm.value());
  }
  return model;
}

KvCacheSpec DeepseekModel::kv_cache_spec(int64_t num_blocks, int64_t block_size) const {
  KvCacheSpec spec;
  spec.num_layers = range_.num_layers();
  spec.num_blocks = num_blocks;
  spec.block_size = block_size;
  spec.dtype = backend_.kv_cache_dtype();
  spec.components = {{"latent", 1, config_.mla.cache_entry()}};  // normed latent | roped k_pe
  return spec;
}

Status DeepseekModel::check_cache(const KvCache& cache) const {
  const KvCacheSpec want = kv_cache_spec(cache.num_blocks(), cache.block_size());
  const KvCacheSpec& have = cache.spec();
  const bool same = have.num_layers == want.num_layers && have.components.size() == 1 &&
                    have.components[0].num_heads == 1 && have.components[0].head_dim == config_.mla.cache_entry();
  if (!same) {
    return make_error(ErrorCode::invalid_argument, "KV cache does not match the DeepSeek model stage (layers " +
                                                       std::to_string(have.num_layers) + " vs " +
                                                       std::to_string(want.num_layers) + ", one latent component)");
  }
  return Status::success();
}

Status DeepseekModel::set_tensor_parallel(Collective* collective) {
  collective_ = (collective != nullptr && collective->size() > 1) ? collective : nullptr;
  TROUPE_TRY(vocab_.set_collective(collective_));
  return Status::success();
}

Result<Tensor> DeepseekModel::forward(const ForwardBatch& batch, KvCache& cache, LogitsMode mode) {
  TROUPE_TRY(check_cache(cache));
  auto meta_host = build_attention_metadata(batch, cache.block_size(), cache.num_blocks());
  if (!meta_host.ok()) return meta_host.error();
  const AttentionMetadata meta = backend_.upload_metadata(std::move(meta_host.value()));
  const int64_t n = meta.num_tokens, hidden = config_.hidden_size;
  const float eps = float(config_.rms_norm_eps);

  Tensor h = backend_.empty(DType::f32, {n, hidden});  // the residual stream
  if (is_first_stage()) {
    if (int64_t(batch.token_ids.size()) != n) {
      return make_error(ErrorCode::invalid_argument, "forward batch: token_ids and positions differ in length");
    }
    for (int32_t id : batch.token_ids) {
      if (id < 0 || id >= config_.vocab_size) {
        return make_error(ErrorCode::invalid_argument, "forward batch: token id " + std::to_string(id) +
                                                           " outside the vocabulary of " +
                                                           std::to_string(config_.vocab_size));
      }
    }
    TROUPE_TRY(vocab_.embed(backend_, batch.token_ids, h));  // vocab-parallel: summed over the ranks
  } else {
    const Tensor& in = batch.hidden_states;
    if (!in.defined() || in.dim() != 2 || in.size(0) != n || in.size(1) != hidden) {
      return make_error(ErrorCode::invalid_argument, "forward batch: hidden_states must be [" + std::to_string(n) +
                                                         ", " + std::to_string(hidden) + "] on a non-first stage");
    }
    backend_.copy(in, h);
  }

  Tensor normed = backend_.empty(backend_.matmul_input_dtype(), {n, hidden});
  Tensor delta = backend_.empty(DType::f32, {n, hidden});
  bool pending = false;
  for (size_t i = 0; i < layers_.size(); ++i) {
    DecoderLayer& layer = layers_[i];
    if (pending) {
      backend_.add_rmsnorm(h, delta, layer.input_norm, eps, normed);
    } else {
      backend_.rmsnorm(h, layer.input_norm, eps, normed);
    }
    layer.attention->forward(normed, meta, cache, int64_t(i), delta);
    if (collective_) TROUPE_TRY(collective_->all_reduce_sum(delta));  // o_proj is row-parallel
    backend_.add_rmsnorm(h, delta, layer.post_attention_norm, eps, normed);
    if (collective_ && config_.moe.dispatch_tokens && moe_layers_[i]) {
      TROUPE_TRY(moe_layers_[i]->forward_dispatched(normed, delta, *collective_));
    } else {
      layer.mlp->forward(normed, delta);
    }
    if (collective_) TROUPE_TRY(collective_->all_reduce_sum(delta));  // down_proj / local experts
    pending = true;
  }
  if (!is_last_stage()) {
    if (pending) backend_.add(h, delta, h);
    return h;
  }
  if (pending) {
    backend_.add_rmsnorm(h, delta, final_norm_, eps, normed);
  } else {
    backend_.rmsnorm(h, final_norm_, eps, normed);
  }
  const int64_t vocab = config_.vocab_size;
  if (mode == LogitsMode::all_tokens) {
    Tensor logits = backend_.empty(DType::f32, {n, vocab});
    TROUPE_TRY(vocab_.lm_head(backend_, normed, logits));
    return logits;
  }
  const int64_t num_rows = int64_t(meta.logits_rows.size());
  Tensor logits = backend_.empty(DType::f32, {num_rows, vocab});
  if (num_rows == 0) return logits;
  Tensor selected = backend_.empty(normed.dtype(), {num_rows, hidden});
  backend_.gather_rows(normed, meta.logits_rows, selected);
  TROUPE_TRY(vocab_.lm_head(backend_, selected, logits));
  return logits;
}

}  // namespace troupe
