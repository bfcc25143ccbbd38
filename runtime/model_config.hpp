#pragma once
// A model's `config.json` (and `generation_config.json`), as the engine needs it.
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/result.hpp"

namespace troupe {

struct RopeScaling {
  std::string type;  // "" (none) | "llama3" | "linear" | "yarn" ("default" reads as none)
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
  // YaRN (DeepSeek-V3): frequency interpolation between the beta_fast / beta_slow correction range;
  // cos/sin scaled by yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim) when both
  // are given, else by yarn_mscale(factor, 1), as transformers does. 0: absent.
  double mscale = 0.0;
  double mscale_all_dim = 0.0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
};

// Multi-head latent attention (DeepSeek-V2/V3). kv_lora_rank 0: not an MLA model.
struct MlaConfig {
  int64_t q_lora_rank = 0;  // 0 (config null): a plain q_proj, as in V2-Lite
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;
  bool enabled() const { return kv_lora_rank > 0; }
  int64_t qk_head_dim() const { return qk_nope_head_dim + qk_rope_head_dim; }
  // Values an MLA layer caches per token: the normed latent and the roped k_pe (576 for R1).
  int64_t cache_entry() const { return kv_lora_rank + qk_rope_head_dim; }
};

// Routed mixture of experts (DeepSeek-V3: sigmoid scores, noaux_tc group-limited top-k).
// n_routed_experts 0: every layer is dense.
struct MoeConfig {
  int64_t n_routed_experts = 0;
  int64_t n_shared_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  int64_t n_group = 1;
  int64_t topk_group = 1;
  std::string topk_method = "noaux_tc";
  std::string scoring_func = "sigmoid";
  double routed_scaling_factor = 1.0;
  bool norm_topk_prob = true;
  int64_t first_k_dense_replace = 0;  // layers [0, k) use the dense MLP
  int64_t moe_layer_freq = 1;         // then every moe_layer_freq-th layer is MoE
  // Tensor parallel (models/tensor_parallel.hpp): rank expert_parallel_rank of expert_parallel_size
  // holds its block of routed experts whole and 1/size of the shared experts' intermediate; the
  // router still scores all n_routed_experts. Defaults: one rank holding everything.
  int64_t expert_parallel_rank = 0;
  int64_t expert_parallel_size = 1;
  // --all2all-backend all_to_all: each rank routes its share of the tokens and sends them to their
  // experts' ranks (models/moe_dispatch.hpp); false: every rank routes every token over its own
  // experts and the partial sums join the all-reduce after the MLP.
  bool dispatch_tokens = false;
  bool enabled() const { return n_routed_experts > 0; }
  bool is_moe_layer(int64_t layer) const {
    return enabled() && layer >= first_k_dense_replace && layer % moe_layer_freq == 0;
  }
  bool has_dense_layers(int64_t num_layers) const {
    for (int64_t l = 0; l < num_layers; ++l)
      if (!is_moe_layer(l)) return true;
    return false;
  }
  // This rank's routed experts: [local_expert_begin(), local_expert_end()).
  int64_t local_expert_begin() const { return expert_parallel_rank * n_routed_experts / expert_parallel_size; }
  int64_t local_expert_end() const { return (expert_parallel_rank + 1) * n_routed_experts / expert_parallel_size; }
  int64_t shared_intermediate_size() const {
    return moe_intermediate_size * n_shared_experts / expert_parallel_size;
  }
};

// `quantization_config` of an FP8 checkpoint; method "": not quantized. Each quantized linear
// weight W [out, in] is F8_E4M3 with, by weight_scale:
//   "block"   (DeepSeek-V3/R1, Qwen3-FP8): W_scale_inv F32 [ceil(out/bn), ceil(in/bk)];
//   "tensor"  (AutoFP8 `fp8` without weight_block_size, compressed-tensors "tensor"): W_scale, one value;
//   "channel" (compressed-tensors "channel", fbgemm_fp8): W_scale [out] or [out, 1];
// the weight is fp8 times its scale (runtime/fp8_block.hpp, runtime/fp8_scales.hpp).
struct QuantizationConfig {
  std::string method;  // "" | "fp8" (also for compressed-tensors and fbgemm_fp8)
  std::string weight_scale = "block";  // "block" | "tensor" | "channel"
  std::string fmt = "e4m3";
  int64_t block_n = 128;  // weight_block_size [block_n, block_k]
  int64_t block_k = 128;
  std::string activation_scheme = "dynamic";
  bool is_fp8() const { return method == "fp8"; }
};

// generation_config.json's sampling defaults; a request that leaves a field out gets these, as
// vLLM applies them (R1 ships temperature 0.6, top_p 0.95). Absent: < 0.
struct GenerationDefaults {
  double temperature = -1.0;
  double top_p = -1.0;
  int64_t top_k = -1;
  bool any() const { return temperature >= 0 || top_p >= 0 || top_k >= 0; }
};

struct ModelConfig {
  // "LlamaForCausalLM" | "Qwen2ForCausalLM" | "Qwen3ForCausalLM" | "DeepseekV3ForCausalLM"
  std::string architecture;
  std::string model_type;  // "llama" | "qwen2" | "qwen3" | "deepseek_v3"
  int64_t vocab_size = 0;  // the whole vocabulary, also on a vocabulary-parallel rank
  // Tensor parallel (models/vocab_parallel.hpp): rank vocab_parallel_rank of vocab_parallel_size
  // holds its block of embedding and LM-head rows. Defaults: one rank holding all of them.
  int64_t vocab_parallel_rank = 0;
  int64_t vocab_parallel_size = 1;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // GQA; defaults to num_attention_heads
  int64_t head_dim = 0;             // defaults to hidden_size / num_attention_heads
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry a bias (Qwen2: always)
  bool mlp_bias = false;
  std::string torch_dtype = "bfloat16";  // the checkpoint's compute dtype
  bool qk_norm = false;  // RMSNorm per head on q and k before RoPE (Qwen3)

  MlaConfig mla;                    // DeepSeek-V3
  MoeConfig moe;                    // DeepSeek-V3
  int64_t num_nextn_predict_layers = 0;  // MTP layers stored after the last decoder layer (unused)
  QuantizationConfig quantization;
  GenerationDefaults generation_defaults;

  // Token ids (config.json, overridden by generation_config.json when present).
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;

  // Reads `model_dir/config.json` (+ generation_config.json). Unknown architectures, missing or
  // inconsistent fields give an error naming the file and the field.
  static Result<ModelConfig> load(const std::string& model_dir);
  // Parses config.json text (generation config optional, may be empty).
  static Result<ModelConfig> parse(const std::string& config_json, const std::string& generation_config_json,
                                   const std::string& source_name);
};

}  // namespace troupe
