#include "runtime/attention.hpp"

#include <cmath>

namespace troupe {

Result<Tensor> load_weight(const WeightLoader& weights, Backend& backend, const std::string& name,
                           const std::vector<int64_t>& shape) {
  auto host = weights(name, shape);
  if (!host.ok()) return host.error();
  auto uploaded = backend.upload_weight(host.value());
  if (!uploaded.ok()) return make_error(uploaded.error().code, name + ": " + uploaded.error().message);
  return uploaded;
}

Result<std::unique_ptr<LlamaAttention>> LlamaAttention::load(const ModelConfig& config, const std::string& prefix,
                                                             const WeightLoader& weights, Backend& backend,
                                                             Tensor inv_freq) {
  std::unique_ptr<LlamaAttention> layer(new LlamaAttention(backend));
  layer->num_heads_ = config.num_attention_heads;
  layer->num_kv_heads_ = config.num_key_value_heads;
  layer->head_dim_ = config.head_dim;
  layer->scale_ = float(1.0 / std::sqrt(double(config.head_dim)));
  layer->inv_freq_ = std::move(inv_freq);
  const int64_t hidden = config.hidden_size, q_dim = config.num_attention_heads * config.head_dim;
  const int64_t kv_dim = config.num_key_value_heads * config.head_dim;
  const bool is_qwen2 = config.model_type == "qwen2" || config.architecture == "Qwen2ForCausalLM";
  const bool qkv_bias = config.attention_bias || is_qwen2;
  const bool o_bias = config.attention_bias && !is_qwen2;  // Qwen2's o_proj never has a bias
  struct Spec {
    const char* name;
    int64_t out;
    int64_t in;
    bool bias;
    Tensor* weight;
    Tensor* bias_tensor;
  };
  const Spec specs[] = {
      {"q_proj", q_dim, hidden, qkv_bias, &layer->q_weight_, &layer->q_bias_},
      {"k_proj", kv_dim, hidden, qkv_bias, &layer->k_weight_, &layer->k_bias_},
      {"v_proj", kv_dim, hidden, qkv_bias, &layer->v_weight_, &layer->v_bias_},
      {"o_proj", hidden, q_dim, o_bias, &layer->o_weight_, &layer->o_bias_},
  };
  for (const auto& s : specs) {
    auto w = load_weight(weights, backend, prefix + s.name + ".weight", {s.out, s.in});
    if (!w.ok()) return w.error();
    *s.weight = std::move(w.value());
    if (s.bias) {
      auto b = load_weight(weights, backend, prefix + s.name + ".bias", {s.out});
      if (!b.ok()) return b.error();
      *s.bias_tensor = std::move(b.value());
    }
  }
  return layer;
}

std::vector<KvComponentSpec> LlamaAttention::kv_components() const {
  return {{"k", num_kv_heads_, head_dim_}, {"v", num_kv_heads_, head_dim_}};
}

void LlamaAttention::forward(const Tensor& x, const AttentionMetadata& meta, KvCache& cache, int64_t cache_layer,
                             Tensor out) {
  const int64_t n = meta.num_tokens;
  Tensor q = backend_.empty(DType::f32, {n, num_heads_, head_dim_});
  Tensor k = backend_.empty(DType::f32, {n, num_kv_heads_, head_dim_});
  Tensor v = backend_.empty(DType::f32, {n, num_kv_heads_, head_dim_});
  backend_.linear(x, q_weight_, q_bias_, q);
  backend_.linear(x, k_weight_, k_bias_, k);
  backend_.linear(x, v_weight_, v_bias_, v);
  backend_.rope(q, k, meta.positions, inv_freq_);
  Tensor& k_cache = cache.component(cache_layer, 0);
  Tensor& v_cache = cache.component(cache_layer, 1);
  backend_.write_kv(k_cache, k, meta.slot_mapping);
  backend_.write_kv(v_cache, v, meta.slot_mapping);
  Tensor attn = backend_.empty(DType::f32, {n, num_heads_, head_dim_});
  backend_.paged_attention(q, k_cache, v_cache, meta, scale_, attn);
  backend_.linear(attn.reshape({n, num_heads_ * head_dim_}), o_weight_, o_bias_, out);
}

}  // namespace troupe
