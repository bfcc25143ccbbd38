#pragma once
// DeepSeek-V2/V3 multi-head latent attention (MLA) with a latent KV cache.
//
//   q    = q_b_proj(rmsnorm_qa(q_a_proj(x)))  or q_proj(x) (q_lora_rank 0)  -> [n, H, qk_nope | qk_rope]
//   kv_a = kv_a_proj_with_mqa(x)                                             -> [n, kv_lora | qk_rope]
//   cache[slot] = [rmsnorm_kv(latent) | rope(k_pe)]   one component "latent", [1, kv_lora + qk_rope]
//   attention: per cached token, [k_nope | v] per head = kv_b_proj(latent) (the expanded form, not
//   the absorbed one: the CPU reference follows transformers), k = [k_nope | k_pe shared by heads]
//   out  = o_proj(attn)                                                      -> [n, hidden]
// RoPE is interleaved (YaRN frequencies, cos/sin times the YaRN attention factor); the softmax
// scale is 1/sqrt(qk_nope + qk_rope) * yarn_mscale(factor, mscale_all_dim)^2.
// Tensor parallel: H is the rank's heads (q/q_b and kv_b row blocks, o_proj a column block, its
// output a partial sum); kv_a and the latent cache are replicated.
#include <memory>
#include <string>
#include <vector>

#include "models/attention.hpp"

namespace troupe {

class MlaAttention final : public AttentionLayer {
 public:
  // prefix: "model.layers.N.self_attn."; inv_freq: [qk_rope / 2] on the backend; rope_scale: the
  // cos/sin factor; softmax_scale as above.
  static Result<std::unique_ptr<MlaAttention>> load(const ModelConfig& config, const std::string& prefix,
                                                    const WeightLoader& weights, Backend& backend, Tensor inv_freq,
                                                    float rope_scale, float softmax_scale);

  std::vector<KvComponentSpec> kv_components() const override;
  void forward(const Tensor& x, const AttentionMetadata& meta, KvCache& cache, int64_t cache_layer,
               Tensor out) override;

 private:
  explicit MlaAttention(Backend& backend) : backend_(backend) {}

  Backend& backend_;
  MlaConfig mla_;
  int64_t num_heads_ = 0;
  float eps_ = 1e-6f;
  float rope_scale_ = 1.0f, softmax_scale_ = 1.0f;
  Tensor q_a_weight_, q_a_norm_, q_b_weight_;  // [q_lora, hidden], [q_lora], [H * qk_head, q_lora] (q_lora > 0)
  Tensor q_weight_;                            // [H * qk_head, hidden] (q_lora 0)
  Tensor kv_a_weight_;                         // [kv_lora + qk_rope, hidden]
  Tensor kv_a_norm_;                           // [kv_lora]
  Tensor kv_b_weight_;                         // [H * (qk_nope + v_head), kv_lora]
  Tensor o_weight_;                            // [hidden, H * v_head]
  Tensor inv_freq_;                            // [qk_rope / 2]
};

}  // namespace troupe
