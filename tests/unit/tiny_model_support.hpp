#pragma once
// Test support: a tiny random-weight Llama/Qwen2 held in memory, and helpers to run batches.
#include <map>
#include <random>
#include <string>
#include <vector>

#include "runtime/model.hpp"
#include "runtime/model_config.hpp"
#include "runtime/tensor.hpp"

namespace troupe::testing {

inline ModelConfig tiny_config(bool qwen2) {
  ModelConfig c;
  c.architecture = qwen2 ? "Qwen2ForCausalLM" : "LlamaForCausalLM";
  c.model_type = qwen2 ? "qwen2" : "llama";
  c.vocab_size = 97;
  c.hidden_size = 48;
  c.intermediate_size = 72;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 6;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 256;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = qwen2;
  c.attention_bias = qwen2;
  if (!qwen2) {
    c.rope_scaling.type = "llama3";
    c.rope_scaling.factor = 8.0;
    c.rope_scaling.original_max_position_embeddings = 16;
  }
  return c;
}

// HF-named random fp32 weights for `config`.
inline std::map<std::string, Tensor> tiny_weights(const ModelConfig& c, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  std::map<std::string, Tensor> w;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float offset = 0.0f) {
    std::vector<float> values(static_cast<size_t>(numel_of(shape)));
    for (float& v : values) v = offset + normal(rng);
    w[name] = Tensor::from_f32(values, std::move(shape));
  };
  const int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  add("model.embed_tokens.weight", {c.vocab_size, h});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {h}, 1.0f);
    add(p + "post_attention_layernorm.weight", {h}, 1.0f);
    add(p + "self_attn.q_proj.weight", {q, h});
    add(p + "self_attn.k_proj.weight", {kv, h});
    add(p + "self_attn.v_proj.weight", {kv, h});
    add(p + "self_attn.o_proj.weight", {h, q});
    if (c.attention_bias) {
      add(p + "self_attn.q_proj.bias", {q});
      add(p + "self_attn.k_proj.bias", {kv});
      add(p + "self_attn.v_proj.bias", {kv});
    }
    add(p + "mlp.gate_proj.weight", {c.intermediate_size, h});
    add(p + "mlp.up_proj.weight", {c.intermediate_size, h});
    add(p + "mlp.down_proj.weight", {h, c.intermediate_size});
  }
  add("model.norm.weight", {h}, 1.0f);
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, h});
  return w;
}

// A WeightLoader over an in-memory map; records the names it was asked for.
inline WeightLoader map_loader(const std::map<std::string, Tensor>& weights, std::vector<std::string>* requested) {
  return [&weights, requested](const std::string& name, const std::vector<int64_t>& shape) -> Result<Tensor> {
    if (requested != nullptr) requested->push_back(name);
    auto it = weights.find(name);
    if (it == weights.end()) return make_error(ErrorCode::not_found, "tensor '" + name + "' not found");
    if (it->second.shape() != shape) return make_error(ErrorCode::corrupt_data, "tensor '" + name + "' shape mismatch");
    return it->second;
  };
}

}  // namespace troupe::testing
