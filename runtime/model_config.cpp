// Parses a Hugging Face `config.json` (+ `generation_config.json`) into ModelConfig.
#include "runtime/model_config.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/json_fields.hpp"
#include "runtime/model_config_sections.hpp"

namespace troupe {
namespace {

using json = nlohmann::json;
using detail::FieldReader;

struct Architecture {
  const char* name;
  const char* model_type;
  bool attention_bias;  // forced on (Qwen2 q/k/v always carry a bias)
};

constexpr Architecture kArchitectures[] = {
    {"LlamaForCausalLM", "llama", false},
    {"Qwen2ForCausalLM", "qwen2", true},
    {"Qwen3ForCausalLM", "qwen3", false},
    {"DeepseekV3ForCausalLM", "deepseek_v3", false},
};

std::string supported_list() {
  std::string out;
  for (const auto& arch : kArchitectures) out += std::string(out.empty() ? "" : ", ") + arch.name;
  return out;
}

// rope_scaling, or the rope-type part of transformers' newer `rope_parameters`.
Status parse_rope_scaling(const FieldReader& rope, const std::string& source, const std::string& field,
                          RopeScaling* out) {
  std::string type;
  TROUPE_TRY(rope.read_string("rope_type", &type));
  if (type.empty()) TROUPE_TRY(rope.read_string("type", &type));
  if (type.empty() || type == "default") {
    *out = RopeScaling{};
    return Status::success();
  }
  if (type != "llama3" && type != "linear" && type != "yarn") {
    return make_error(ErrorCode::unsupported, source + ": " + field + " type '" + type +
                                                  "' is not supported (supported: default, linear, llama3, yarn)");
  }
  out->type = type;
  TROUPE_TRY(rope.read_double("factor", &out->factor, /*required=*/true));
  if (!(out->factor > 0)) return rope.error("factor", "must be > 0");
  if (type == "llama3") {
    TROUPE_TRY(rope.read_double("low_freq_factor", &out->low_freq_factor, true));
    TROUPE_TRY(rope.read_double("high_freq_factor", &out->high_freq_factor, true));
    TROUPE_TRY(rope.read_int("original_max_position_embeddings", &out->original_max_position_embeddings, true));
    if (!(out->low_freq_factor > 0) || !(out->high_freq_factor > out->low_freq_factor)) {
      return rope.error("high_freq_factor", "must be greater than low_freq_factor (both > 0)");
    }
    if (out->original_max_position_embeddings <= 0) {
      return rope.error("original_max_position_embeddings", "must be > 0");
    }
  }
  if (type == "yarn") TROUPE_TRY(detail::parse_yarn(rope, out));
  return Status::success();
}

std::string generation_source_name(const std::string& source_name) {
  const std::filesystem::path path(source_name);
  if (path.filename() == "config.json") return (path.parent_path() / "generation_config.json").string();
  return "generation config of " + source_name;
}

Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(ErrorCode::not_found, "cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

Result<ModelConfig> ModelConfig::parse(const std::string& config_json, const std::string& generation_config_json,
                                       const std::string& source_name) {
  const json root = json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return make_error(ErrorCode::corrupt_data, source_name + ": not a valid JSON object");
  }
  const FieldReader field(root, source_name);
  ModelConfig config;

  // Architecture: the first supported entry of `architectures`, else inferred from model_type.
  TROUPE_TRY(field.read_string("model_type", &config.model_type));
  const Architecture* arch = nullptr;
  std::string listed;
  if (const json* names = field.find("architectures")) {
    if (!names->is_array() || names->empty()) return field.error("architectures", "must be a non-empty list");
    for (const json& name : *names) {
      if (!name.is_string()) return field.error("architectures", "must list strings");
      listed += std::string(listed.empty() ? "" : ", ") + name.get<std::string>();
      for (const auto& known : kArchitectures) {
        if (!arch && name.get<std::string>() == known.name) arch = &known;
      }
    }
  } else if (!config.model_type.empty()) {
    listed = "model_type " + config.model_type;
    for (const auto& known : kArchitectures) {
      if (config.model_type == known.model_type) arch = &known;
    }
  } else {
    return field.error("architectures", "is missing (and no model_type)");
  }
  if (!arch) {
    return make_error(ErrorCode::unsupported, source_name + ": architecture " + listed +
                                                  " is not supported (supported: " + supported_list() + ")");
  }
  config.architecture = arch->name;
  if (config.model_type.empty()) config.model_type = arch->model_type;

  TROUPE_TRY(field.read_int("vocab_size", &config.vocab_size, true));
  TROUPE_TRY(field.read_int("hidden_size", &config.hidden_size, true));
  TROUPE_TRY(field.read_int("intermediate_size", &config.intermediate_size, true));
  TROUPE_TRY(field.read_int("num_hidden_layers", &config.num_hidden_layers, true));
  TROUPE_TRY(field.read_int("num_attention_heads", &config.num_attention_heads, true));
  TROUPE_TRY(field.read_int("max_position_embeddings", &config.max_position_embeddings, true));
  const std::pair<const char*, int64_t> sizes[] = {
      {"vocab_size", config.vocab_size},
      {"hidden_size", config.hidden_size},
      {"intermediate_size", config.intermediate_size},
      {"num_hidden_layers", config.num_hidden_layers},
      {"num_attention_heads", config.num_attention_heads},
      {"max_position_embeddings", config.max_position_embeddings},
  };
  for (const auto& [key, value] : sizes) {
    if (value <= 0) return field.error(key, "must be > 0, got " + std::to_string(value));
  }

  config.num_key_value_heads = config.num_attention_heads;
  TROUPE_TRY(field.read_int("num_key_value_heads", &config.num_key_value_heads));
  if (config.num_key_value_heads <= 0 || config.num_attention_heads % config.num_key_value_heads != 0) {
    return field.error("num_key_value_heads", "must be > 0 and divide num_attention_heads (" +
                                                  std::to_string(config.num_attention_heads) + "), got " +
                                                  std::to_string(config.num_key_value_heads));
  }
  if (field.has("head_dim")) {
    TROUPE_TRY(field.read_int("head_dim", &config.head_dim));
    if (config.head_dim <= 0) return field.error("head_dim", "must be > 0");
  } else {
    if (config.hidden_size % config.num_attention_heads != 0) {
      return field.error("hidden_size", "must be divisible by num_attention_heads when head_dim is absent");
    }
    config.head_dim = config.hidden_size / config.num_attention_heads;
  }

  TROUPE_TRY(field.read_double("rms_norm_eps", &config.rms_norm_eps));
  if (!(config.rms_norm_eps > 0)) return field.error("rms_norm_eps", "must be > 0");
  TROUPE_TRY(field.read_bool("tie_word_embeddings", &config.tie_word_embeddings));
  TROUPE_TRY(field.read_bool("attention_bias", &config.attention_bias));
  if (arch->attention_bias) config.attention_bias = true;
  TROUPE_TRY(field.read_bool("mlp_bias", &config.mlp_bias));
  config.qk_norm = config.model_type == "qwen3" || config.architecture == "Qwen3ForCausalLM";
  TROUPE_TRY(field.read_string("torch_dtype", &config.torch_dtype));
  if (!field.has("torch_dtype")) TROUPE_TRY(field.read_string("dtype", &config.torch_dtype));  // transformers v5

  // RoPE: rope_theta + rope_scaling, or (newer transformers) rope_parameters holding both.
  TROUPE_TRY(field.read_double("rope_theta", &config.rope_theta));
  if (const json* scaling = field.find("rope_scaling")) {
    if (!scaling->is_object()) return field.error("rope_scaling", "must be an object or null");
    TROUPE_TRY(parse_rope_scaling(FieldReader(*scaling, source_name, "rope_scaling."), source_name,
                                  "rope_scaling", &config.rope_scaling));
  }
  if (const json* params = field.find("rope_parameters")) {
    if (!params->is_object()) return field.error("rope_parameters", "must be an object or null");
    const FieldReader rope(*params, source_name, "rope_parameters.");
    TROUPE_TRY(rope.read_double("rope_theta", &config.rope_theta));
    TROUPE_TRY(parse_rope_scaling(rope, source_name, "rope_parameters", &config.rope_scaling));
  }
  if (!(config.rope_theta > 0)) return field.error("rope_theta", "must be > 0");

  if (config.architecture == "DeepseekV3ForCausalLM") TROUPE_TRY(detail::parse_deepseek_v3(field, &config));
  // YaRN also scales cos/sin (mscale), which only the DeepSeek model applies.
  if (config.rope_scaling.type == "yarn" && config.architecture != "DeepseekV3ForCausalLM")
    return make_error(ErrorCode::unsupported, source_name + ": rope_scaling type 'yarn' is supported for "
                                              "DeepseekV3ForCausalLM only, not " + config.architecture);
  TROUPE_TRY(detail::parse_quantization(field, &config.quantization));

  bool found = false;
  TROUPE_TRY(field.read_int("bos_token_id", &config.bos_token_id));
  TROUPE_TRY(field.read_int_list("eos_token_id", &config.eos_token_ids, &found));

  if (!generation_config_json.empty()) {
    const std::string gen_source = generation_source_name(source_name);
    const json gen_root = json::parse(generation_config_json, nullptr, /*allow_exceptions=*/false);
    if (gen_root.is_discarded() || !gen_root.is_object()) {
      return make_error(ErrorCode::corrupt_data, gen_source + ": not a valid JSON object");
    }
    const FieldReader gen(gen_root, gen_source);
    TROUPE_TRY(gen.read_int("bos_token_id", &config.bos_token_id));
    std::vector<int64_t> eos;
    TROUPE_TRY(gen.read_int_list("eos_token_id", &eos, &found));
    if (found) config.eos_token_ids = std::move(eos);
    TROUPE_TRY(detail::parse_generation_defaults(gen, &config.generation_defaults));
  }
  return config;
}

Result<ModelConfig> ModelConfig::load(const std::string& model_dir) {
  const std::filesystem::path dir(model_dir);
  const std::string config_path = (dir / "config.json").string();
  std::error_code ec;
  if (!std::filesystem::exists(config_path, ec)) {
    return make_error(ErrorCode::not_found, "no config.json in " + model_dir);
  }
  auto config_text = read_text(config_path);
  if (!config_text.ok()) return config_text.error();
  std::string generation_text;
  const std::string generation_path = (dir / "generation_config.json").string();
  if (std::filesystem::exists(generation_path, ec)) {
    auto text = read_text(generation_path);
    if (!text.ok()) return text.error();
    generation_text = std::move(text.value());
  }
  return parse(*config_text, generation_text, config_path);
}

}  // namespace troupe
