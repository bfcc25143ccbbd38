#pragma once
// A model's `config.json` (and `generation_config.json`), as the engine needs it.
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/result.hpp"

namespace troupe {

struct RopeScaling {
  std::string type;  // "" (none) | "llama3" | "linear" ("default" reads as none)
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string architecture;  // "LlamaForCausalLM" | "Qwen2ForCausalLM" (more to come: DeepseekV3ForCausalLM)
  std::string model_type;    // "llama" | "qwen2"
  int64_t vocab_size = 0;
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
