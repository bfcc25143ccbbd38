#include "models/llama_model.hpp"

#include "models/rope.hpp"

namespace troupe {

Result<std::unique_ptr<LlamaModel>> LlamaModel::load(const ModelConfig& config, Backend& backend, LayerRange range,
                                                     const WeightLoader& weights) {
  if (config.architecture != "LlamaForCausalLM" && config.architecture != "Qwen2ForCausalLM" &&
      config.architecture != "Qwen3ForCausalLM") {
    return make_error(ErrorCode::unsupported, "LlamaModel: unsupported architecture '" + config.architecture + "'");
  }
  TROUPE_TRY(resolve_range(config, range));
  if (config.num_key_value_heads <= 0 || config.num_attention_heads % config.num_key_value_heads != 0 ||
      config.head_dim <= 0 || config.head_dim % 2 != 0) {
    return make_error(ErrorCode::unsupported, "LlamaModel: num_attention_heads must be a multiple of "
                                              "num_key_value_heads and head_dim even");
  }
  std::unique_ptr<LlamaModel> model(new LlamaModel(config, backend, range));
  TROUPE_TRY(model->load_vocab(weights));
  auto inv_freq_host = rope_inv_freq(config.head_dim, config.rope_theta, config.rope_scaling);
  auto inv_freq = backend.upload_weight(Tensor::from_f32(inv_freq_host, {int64_t(inv_freq_host.size())}));
  if (!inv_freq.ok()) return inv_freq.error();
  for (int64_t i = range.begin; i < range.end; ++i) {
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    DecoderLayer layer;
    TROUPE_TRY(model->load_layer_norms(weights, prefix, layer));
    auto attention = LlamaAttention::load(config, prefix + "self_attn.", weights, backend, inv_freq.value());
    if (!attention.ok()) return attention.error();
    auto mlp = LlamaMlp::load(config, prefix + "mlp.", weights, backend);
    if (!mlp.ok()) return mlp.error();
    layer.attention = std::move(attention.value());
    layer.mlp = std::move(mlp.value());
    model->layers_.push_back(std::move(layer));
  }
  TROUPE_TRY(model->load_final_norm(weights));
  // Measured on Llama-3-8B and Qwen3-8B FP8 (kernels/smem_carveout.hpp).
  backend.prefer_fp8_decode(config.quantization.is_fp8() && backend.keeps_fp8_weights());
  return model;
}

KvCacheSpec LlamaModel::kv_cache_spec(int64_t num_blocks, int64_t block_size) const {
  KvCacheSpec spec;
  spec.num_layers = range_.num_layers();
  spec.num_blocks = num_blocks;
  spec.block_size = block_size;
  spec.dtype = backend_.kv_cache_dtype();
  spec.components = {{"k", config_.num_key_value_heads, config_.head_dim},
                     {"v", config_.num_key_value_heads, config_.head_dim}};
  if (spec.dtype == DType::f8_e4m3) {
    for (const DecoderLayer& layer : layers_) {
      const std::vector<float> scales = layer.attention->kv_cache_scales();
      spec.scales.insert(spec.scales.end(), scales.begin(), scales.end());
    }
  }
  return spec;
}

Status LlamaModel::check_cache(const KvCache& cache) const {
  const KvCacheSpec want = kv_cache_spec(cache.num_blocks(), cache.block_size());
  const KvCacheSpec& have = cache.spec();
  bool same = have.num_layers == want.num_layers && have.components.size() == want.components.size();
  for (size_t i = 0; same && i < want.components.size(); ++i) {
    same = have.components[i].num_heads == want.components[i].num_heads &&
           have.components[i].head_dim == want.components[i].head_dim;
  }
  if (!same) {
    return make_error(ErrorCode::invalid_argument, "KV cache does not match the model stage (layers " +
                                                       std::to_string(have.num_layers) + " vs " +
                                                       std::to_string(want.num_layers) + ")");
  }
  return Status::success();
}

}  // namespace troupe
