#include "models/deepseek_model.hpp"

#include <cmath>

#include "models/mla_attention.hpp"
#include "models/moe.hpp"
#include "models/rope.hpp"

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
  TROUPE_TRY(resolve_range(config, range));
  const MlaConfig& mla = config.mla;
  if (!mla.enabled() || mla.qk_rope_head_dim <= 0 || mla.qk_rope_head_dim % 2 != 0 || mla.v_head_dim <= 0)
    return make_error(ErrorCode::unsupported, "DeepseekModel: needs kv_lora_rank > 0, an even qk_rope_head_dim and "
                                              "v_head_dim > 0");
  std::unique_ptr<DeepseekModel> model(new DeepseekModel(config, backend, range));
  TROUPE_TRY(model->load_vocab(weights));
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
    TROUPE_TRY(model->load_layer_norms(weights, prefix, layer));
    auto attention = MlaAttention::load(config, prefix + "self_attn.", weights, backend, inv_freq.value(), rope_scale,
                                        float(softmax_scale));
    if (!attention.ok()) return attention.error();
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
  TROUPE_TRY(model->load_final_norm(weights));
  // R1's reduced shape at batch 1 on the H200: 2.44 ms per step with the driver's carveout, 2.21
  // with 50 (kernels/smem_carveout.hpp).
  backend.prefer_fp8_decode(config.quantization.is_fp8() && backend.keeps_fp8_weights());
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

Status DeepseekModel::mlp_step(size_t i, const Tensor& normed, Tensor delta) {
  if (collective_ && config_.moe.dispatch_tokens && moe_layers_[i])
    return moe_layers_[i]->forward_dispatched(normed, delta, *collective_);
  return DecoderModel::mlp_step(i, normed, delta);
}

}  // namespace troupe
