#pragma once
// Attention layers behind one small interface, so a model can mix kinds (Llama/Qwen2 multi-head
// attention with GQA now; DeepSeek's MLA with a latent cache later).
#include <memory>
#include <string>
#include <vector>

#include "models/kv_cache_scales.hpp"
#include "runtime/attention_metadata.hpp"
#include "runtime/backend.hpp"
#include "runtime/kv_cache.hpp"
#include "runtime/model.hpp"
#include "runtime/model_config.hpp"

namespace troupe {

class AttentionLayer {
 public:
  virtual ~AttentionLayer() = default;
  // The cache entries one token needs in each layer.
  virtual std::vector<KvComponentSpec> kv_components() const = 0;
  // The per-tensor scale of each kv_components() entry in an f8_e4m3 cache (1 each by default).
  virtual std::vector<float> kv_cache_scales() const { return std::vector<float>(kv_components().size(), 1.0f); }
  // x: [num_tokens, hidden] (normed) -> out: [num_tokens, hidden]. Writes this step's K/V into
  // layer `cache_layer` of `cache`, then attends.
  virtual void forward(const Tensor& x, const AttentionMetadata& meta, KvCache& cache, int64_t cache_layer,
                       Tensor out) = 0;
};

// Llama / Qwen2 / Qwen3 self-attention: q/k/v projections (optional bias), for Qwen3 an RMSNorm
// per head on q and k (q_norm, k_norm: [head_dim]) before RoPE, neox rotary, paged causal
// attention with GQA, o projection. Cache components "k" and "v", [num_kv_heads, head_dim] each.
// q/k/v are fused at load time into one [q_dim + 2 * kv_dim, hidden] weight: one linear per layer
// gives [n, q_dim + 2 * kv_dim], then one qkv_rope_write_kv op (Qwen3's q/k norms included) ropes
// q into a dense [n, heads, head_dim] tensor and writes rope(k) and v straight into the cache.
class LlamaAttention final : public AttentionLayer {
 public:
  // prefix: "model.layers.N.self_attn."; inv_freq: [head_dim / 2] on the backend.
  static Result<std::unique_ptr<LlamaAttention>> load(const ModelConfig& config, const std::string& prefix,
                                                      const WeightLoader& weights, Backend& backend, Tensor inv_freq);

  std::vector<KvComponentSpec> kv_components() const override;
  // {k_scale, v_scale}: the checkpoint's (models/kv_cache_scales.hpp) with an f8_e4m3 cache, else 1.
  std::vector<float> kv_cache_scales() const override { return {kv_scales_.k, kv_scales_.v}; }
  void forward(const Tensor& x, const AttentionMetadata& meta, KvCache& cache, int64_t cache_layer,
               Tensor out) override;

 private:
  explicit LlamaAttention(Backend& backend) : backend_(backend) {}

  Backend& backend_;
  int64_t num_heads_ = 0;
  int64_t num_kv_heads_ = 0;
  int64_t head_dim_ = 0;
  float scale_ = 1.0f;
  Tensor qkv_weight_, o_weight_;  // [q_dim + 2 * kv_dim, hidden] (q, k, v rows), [hidden, q_dim]
  Tensor qkv_bias_, o_bias_;      // [q_dim + 2 * kv_dim], [hidden] or undefined
  Tensor inv_freq_;                                   // [head_dim / 2]
  QkNorm qk_norm_;  // Qwen3's q_norm / k_norm weights ([head_dim]) and eps; undefined otherwise
  KvScales kv_scales_;  // read only when the backend's cache is f8_e4m3 (vLLM ignores them otherwise)
};

// Loads one weight of `shape` and moves it to the backend; errors name the tensor. An FP8 block
// weight (Tensor::block_scale) stays FP8 where the backend keeps_fp8_weights() and `allow_fp8`,
// and is dequantized to fp32 on the host otherwise (a weight an op other than linear reads).
Result<Tensor> load_weight(const WeightLoader& weights, Backend& backend, const std::string& name,
                           const std::vector<int64_t>& shape, bool allow_fp8 = true);

// One checkpoint tensor to concatenate: its HF name and shape.
struct WeightPart {
  std::string name;
  std::vector<int64_t> shape;
};

// Loads `parts` (same shape past axis 0), concatenates them along axis 0 on the host and moves
// the result to the backend as one weight (a fused projection). Parts of one dtype keep it;
// mixed float dtypes are widened to fp32 first. FP8 block parts stay FP8 (their scale rows
// concatenated) where the backend keeps FP8 and every part but the last has whole 128-row blocks;
// otherwise they are dequantized first. Errors name the tensor.
Result<Tensor> load_fused_weight(const WeightLoader& weights, Backend& backend, const std::vector<WeightPart>& parts);

}  // namespace troupe
