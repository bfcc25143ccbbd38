#include "models/llama_model.hpp"

#include "runtime/attention_metadata.hpp"
#include "models/rope.hpp"

namespace troupe {

Result<std::unique_ptr<LlamaModel>> LlamaModel::load(const ModelConfig& config, Backend& backend, LayerRange range,
                                                     const WeightLoader& weights) {
  if (config.architecture != "LlamaForCausalLM" && config.architecture != "Qwen2ForCausalLM" &&
      config.architecture != "Qwen3ForCausalLM") {
    return make_error(ErrorCode::unsupported, "LlamaModel: unsupported architecture '" + config.architecture + "'");
  }
  if (range.end < 0) range.end = config.num_hidden_layers;
  if (range.begin < 0 || range.begin > range.end || range.end > config.num_hidden_layers) {
    return make_error(ErrorCode::invalid_argument,
                      "layer range [" + std::to_string(range.begin) + ", " + std::to_string(range.end) +
                          ") outside the model's " + std::to_string(config.num_hidden_layers) + " layers");
  }
  if (config.num_key_value_heads <= 0 || config.num_attention_heads % config.num_key_value_heads != 0 ||
      config.head_dim <= 0 || config.head_dim % 2 != 0) {
    return make_error(ErrorCode::unsupported, "LlamaModel: num_attention_heads must be a multiple of "
                                              "num_key_value_heads and head_dim even");
  }
  std::unique_ptr<LlamaModel> model(new LlamaModel(config, backend, range));
  const int64_t hidden = config.hidden_size;
  const bool first = range.begin == 0, last = range.end == config.num_hidden_layers;
  auto vocab = VocabParallel::load(config, weights, backend, first, last);
  if (!vocab.ok()) return vocab.error();
  model->vocab_ = std::move(vocab.value());
  auto inv_freq_host = rope_inv_freq(config.head_dim, config.rope_theta, config.rope_scaling);
  auto inv_freq = backend.upload_weight(Tensor::from_f32(inv_freq_host, {int64_t(inv_freq_host.size())}));
  if (!inv_freq.ok()) return inv_freq.error();
  for (int64_t i = range.begin; i < range.end; ++i) {
    const std::string prefix = "model.layers." + std::to_string(i) + ".";
    DecoderLayer layer;
    auto in_norm = load_weight(weights, backend, prefix + "input_layernorm.weight", {hidden});
    if (!in_norm.ok()) return in_norm.error();
    auto post_norm = load_weight(weights, backend, prefix + "post_attention_layernorm.weight", {hidden});
    if (!post_norm.ok()) return post_norm.error();
    auto attention = LlamaAttention::load(config, prefix + "self_attn.", weights, backend, inv_freq.value());
    if (!attention.ok()) return attention.error();
    auto mlp = LlamaMlp::load(config, prefix + "mlp.", weights, backend);
    if (!mlp.ok()) return mlp.error();
    layer.input_norm = std::move(in_norm.value());
    layer.post_attention_norm = std::move(post_norm.value());
    layer.attention = std::move(attention.value());
    layer.mlp = std::move(mlp.value());
    model->layers_.push_back(std::move(layer));
  }
  if (last) {
    auto norm = load_weight(weights, backend, "model.norm.weight", {hidden});
    if (!norm.ok()) return norm.error();
    model->final_norm_ = std::move(norm.value());
  }
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

Status LlamaModel::set_tensor_parallel(Collective* collective) {
  collective_ = (collective != nullptr && collective->size() > 1) ? collective : nullptr;
  TROUPE_TRY(vocab_.set_collective(collective_));
  return Status::success();
}

Result<Tensor> LlamaModel::forward(const ForwardBatch& batch, KvCache& cache, LogitsMode mode) {
  TROUPE_TRY(check_cache(cache));
  auto meta_host = build_attention_metadata(batch, cache.block_size(), cache.num_blocks());
  if (!meta_host.ok()) return meta_host.error();
  const AttentionMetadata meta = backend_.upload_metadata(std::move(meta_host.value()));
  const int64_t n = meta.num_tokens, hidden = config_.hidden_size;
  const float eps = float(config_.rms_norm_eps);

  // The residual stream h: [n, hidden].
  Tensor h = backend_.empty(DType::f32, {n, hidden});
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
    backend_.copy(in, h);  // h is updated in place; the caller's tensor stays as it was
  }

  // The sublayers' input, read only by products: bf16 where the backend's products take bf16.
  Tensor normed = backend_.empty(backend_.matmul_input_dtype(), {n, hidden});
  Tensor delta = backend_.empty(DType::f32, {n, hidden});  // a sublayer's output, added to h lazily
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
    layer.mlp->forward(normed, delta);
    if (collective_) TROUPE_TRY(collective_->all_reduce_sum(delta));  // down_proj is row-parallel
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
  bool every_token = num_rows == n;  // a decode step sampling every sequence: no rows to pick
  for (int64_t i = 0; every_token && i < num_rows; ++i) every_token = meta.logits_rows[size_t(i)] == i;
  if (every_token) {
    TROUPE_TRY(vocab_.lm_head(backend_, normed, logits));
    return logits;
  }
  Tensor selected = backend_.empty(normed.dtype(), {num_rows, hidden});
  backend_.gather_rows(normed, meta.logits_rows, selected);
  TROUPE_TRY(vocab_.lm_head(backend_, selected, logits));
  return logits;
}

}  // namespace troupe
