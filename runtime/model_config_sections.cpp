#include "runtime/model_config_sections.hpp"

#include <string>

namespace troupe::detail {
namespace {

Status require_positive(const FieldReader& field, const char* key, int64_t value) {
  if (value <= 0) return field.error(key, "must be > 0, got " + std::to_string(value));
  return Status::success();
}

}  // namespace

Status parse_yarn(const FieldReader& rope, RopeScaling* out) {
  TROUPE_TRY(rope.read_int("original_max_position_embeddings", &out->original_max_position_embeddings, true));
  if (out->original_max_position_embeddings <= 0) return rope.error("original_max_position_embeddings", "must be > 0");
  TROUPE_TRY(rope.read_double("mscale", &out->mscale));
  TROUPE_TRY(rope.read_double("mscale_all_dim", &out->mscale_all_dim));
  TROUPE_TRY(rope.read_double("beta_fast", &out->beta_fast));
  TROUPE_TRY(rope.read_double("beta_slow", &out->beta_slow));
  if (!(out->beta_fast > out->beta_slow) || !(out->beta_slow > 0))
    return rope.error("beta_fast", "must be greater than beta_slow (both > 0)");
  return Status::success();
}

Status parse_deepseek_v3(const FieldReader& field, ModelConfig* config) {
  MlaConfig& mla = config->mla;
  TROUPE_TRY(field.read_int("q_lora_rank", &mla.q_lora_rank));  // null: a plain q_proj
  if (mla.q_lora_rank < 0) return field.error("q_lora_rank", "must be > 0 or null");
  TROUPE_TRY(field.read_int("kv_lora_rank", &mla.kv_lora_rank, true));
  TROUPE_TRY(field.read_int("qk_nope_head_dim", &mla.qk_nope_head_dim, true));
  TROUPE_TRY(field.read_int("qk_rope_head_dim", &mla.qk_rope_head_dim, true));
  TROUPE_TRY(field.read_int("v_head_dim", &mla.v_head_dim, true));
  TROUPE_TRY(require_positive(field, "kv_lora_rank", mla.kv_lora_rank));
  TROUPE_TRY(require_positive(field, "qk_nope_head_dim", mla.qk_nope_head_dim));
  TROUPE_TRY(require_positive(field, "v_head_dim", mla.v_head_dim));
  TROUPE_TRY(require_positive(field, "qk_rope_head_dim", mla.qk_rope_head_dim));
  if (mla.qk_rope_head_dim % 2 != 0) return field.error("qk_rope_head_dim", "must be even (RoPE rotates pairs)");
  // head_dim is what a query/key head holds; DeepSeek's config.json may omit it.
  config->head_dim = mla.qk_head_dim();
  // DeepSeek's RoPE rotates adjacent pairs of the rope dims unless rope_interleave says otherwise.
  bool interleave = true;
  TROUPE_TRY(field.read_bool("rope_interleave", &interleave));
  if (!interleave) return field.unsupported("rope_interleave", "false is not supported (DeepSeek-V3 rotates adjacent pairs)");

  MoeConfig& moe = config->moe;
  TROUPE_TRY(field.read_int("n_routed_experts", &moe.n_routed_experts));
  TROUPE_TRY(field.read_int("first_k_dense_replace", &moe.first_k_dense_replace));
  TROUPE_TRY(field.read_int("moe_layer_freq", &moe.moe_layer_freq));
  TROUPE_TRY(field.read_int("num_nextn_predict_layers", &config->num_nextn_predict_layers));
  if (moe.first_k_dense_replace < 0) return field.error("first_k_dense_replace", "must be >= 0");
  if (moe.moe_layer_freq <= 0) return field.error("moe_layer_freq", "must be > 0");
  if (config->num_nextn_predict_layers < 0) return field.error("num_nextn_predict_layers", "must be >= 0");
  if (!moe.enabled()) return Status::success();
  TROUPE_TRY(field.read_int("n_shared_experts", &moe.n_shared_experts));
  TROUPE_TRY(field.read_int("num_experts_per_tok", &moe.num_experts_per_tok, true));
  TROUPE_TRY(field.read_int("moe_intermediate_size", &moe.moe_intermediate_size, true));
  TROUPE_TRY(field.read_int("n_group", &moe.n_group));
  TROUPE_TRY(field.read_int("topk_group", &moe.topk_group));
  TROUPE_TRY(field.read_string("topk_method", &moe.topk_method));
  TROUPE_TRY(field.read_string("scoring_func", &moe.scoring_func));
  TROUPE_TRY(field.read_double("routed_scaling_factor", &moe.routed_scaling_factor));
  TROUPE_TRY(field.read_bool("norm_topk_prob", &moe.norm_topk_prob));
  if (moe.n_shared_experts < 0) return field.error("n_shared_experts", "must be >= 0");
  TROUPE_TRY(require_positive(field, "moe_intermediate_size", moe.moe_intermediate_size));
  if (moe.num_experts_per_tok <= 0 || moe.num_experts_per_tok > moe.n_routed_experts)
    return field.error("num_experts_per_tok", "must be in [1, n_routed_experts " + std::to_string(moe.n_routed_experts) +
                                                  "], got " + std::to_string(moe.num_experts_per_tok));
  if (moe.n_group <= 0 || moe.n_routed_experts % moe.n_group != 0)
    return field.error("n_group", "must be > 0 and divide n_routed_experts (" + std::to_string(moe.n_routed_experts) +
                                      "), got " + std::to_string(moe.n_group));
  if (moe.topk_group <= 0 || moe.topk_group > moe.n_group)
    return field.error("topk_group", "must be in [1, n_group " + std::to_string(moe.n_group) + "], got " +
                                         std::to_string(moe.topk_group));
  // A group's score is the sum of its top-2 biased scores, and the kept groups must hold top-k experts.
  const int64_t per_group = moe.n_routed_experts / moe.n_group;
  if (moe.n_group > 1 && per_group < 2)
    return field.error("n_group", "leaves fewer than 2 experts per group (a group scores by its top 2)");
  if (moe.topk_group * per_group < moe.num_experts_per_tok)
    return field.error("topk_group", "keeps " + std::to_string(moe.topk_group * per_group) +
                                         " experts, fewer than num_experts_per_tok " +
                                         std::to_string(moe.num_experts_per_tok));
  if (moe.topk_method != "noaux_tc")
    return field.unsupported("topk_method", "'" + moe.topk_method + "' is not supported (supported: noaux_tc)");
  if (moe.scoring_func != "sigmoid")
    return field.unsupported("scoring_func", "'" + moe.scoring_func + "' is not supported with noaux_tc (supported: sigmoid)");
  if (!(moe.routed_scaling_factor > 0)) return field.error("routed_scaling_factor", "must be > 0");
  return Status::success();
}

namespace {

// compressed-tensors (llm-compressor, RedHatAI's FP8 checkpoints): every config group must quantize
// weights to 8-bit floats with one strategy, "tensor" or "channel".
Status parse_compressed_tensors(const FieldReader& quant, QuantizationConfig* out) {
  auto groups = quant.find_object("config_groups");
  if (!groups.ok()) return groups.error();
  if (groups.value() == nullptr || groups.value()->empty())
    return quant.error("config_groups", "is missing or empty");
  std::string strategy;
  for (const auto& [group_name, group] : groups.value()->items()) {
    const std::string where = "config_groups." + group_name + ".weights";
    const json* weights = group.is_object() ? &group : nullptr;
    if (weights) weights = weights->contains("weights") ? &(*weights)["weights"] : nullptr;
    if (!weights || !weights->is_object()) return quant.error(where.c_str(), "is missing");
    auto text = [&](const char* key) {
      const auto it = weights->find(key);
      return it != weights->end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    const auto bits_it = weights->find("num_bits");
    const int64_t bits = bits_it != weights->end() && bits_it->is_number_integer() ? bits_it->get<int64_t>() : 0;
    const std::string type = text("type"), group_strategy = text("strategy");
    if (type != "float" || bits != 8)
      return quant.unsupported(where.c_str(), "type '" + type + "' with " + std::to_string(bits) +
                                                  " bits is not supported (supported: 8-bit float, FP8 e4m3)");
    if (group_strategy != "tensor" && group_strategy != "channel")
      return quant.unsupported(where.c_str(), "strategy '" + group_strategy +
                                                  "' is not supported (supported: tensor, channel; DeepSeek-style "
                                                  "128x128 blocks as quant_method fp8)");
    if (!strategy.empty() && strategy != group_strategy)
      return quant.unsupported(where.c_str(), "mixes strategies '" + strategy + "' and '" + group_strategy + "'");
    strategy = group_strategy;
  }
  out->weight_scale = strategy;
  return Status::success();
}

}  // namespace

Status parse_quantization(const FieldReader& field, QuantizationConfig* out) {
  auto found = field.find_object("quantization_config");
  if (!found.ok()) return found.error();
  if (found.value() == nullptr) return Status::success();
  const FieldReader quant(*found.value(), field.source(), "quantization_config.");
  std::string method;
  TROUPE_TRY(quant.read_string("quant_method", &method));
  if (method.empty()) return quant.error("quant_method", "is missing");
  // Every FP8 format troupe reads ends up as method "fp8" with its weight scales' layout.
  if (method == "compressed-tensors") {
    TROUPE_TRY(parse_compressed_tensors(quant, out));
    out->method = "fp8";
    return Status::success();
  }
  if (method == "fbgemm_fp8") {  // per-channel weight scales, dynamic per-token activation scales
    out->method = "fp8";
    out->weight_scale = "channel";
    return Status::success();
  }
  if (method != "fp8")
    return quant.unsupported("quant_method", "'" + method +
                                                 "' is not supported (supported: fp8 (128x128 blocks or one scale "
                                                 "per tensor), compressed-tensors FP8 (tensor or channel), fbgemm_fp8)");
  out->method = method;
  TROUPE_TRY(quant.read_string("fmt", &out->fmt));
  if (out->fmt != "e4m3") return quant.unsupported("fmt", "'" + out->fmt + "' is not supported (supported: e4m3)");
  TROUPE_TRY(quant.read_string("activation_scheme", &out->activation_scheme));
  // "static" checkpoints carry input scales; troupe quantizes activations per token and 128
  // channels at run time instead (finer), so they are not read.
  if (out->activation_scheme != "dynamic" && out->activation_scheme != "static")
    return quant.unsupported("activation_scheme",
                             "'" + out->activation_scheme + "' is not supported (supported: dynamic, static)");
  const json* block = quant.find("weight_block_size");
  if (!block) {  // AutoFP8's format: one weight_scale per tensor
    out->weight_scale = "tensor";
    return Status::success();
  }
  if (!block->is_array() || block->size() != 2 || !(*block)[0].is_number_integer() || !(*block)[1].is_number_integer())
    return quant.error("weight_block_size", "must be a list of two integers, got " + block->dump());
  out->block_n = (*block)[0].get<int64_t>();
  out->block_k = (*block)[1].get<int64_t>();
  if (out->block_n != 128 || out->block_k != 128)
    return quant.unsupported("weight_block_size", block->dump() + " is not supported (supported: [128, 128])");
  return Status::success();
}

Status parse_generation_defaults(const FieldReader& gen, GenerationDefaults* out) {
  if (gen.has("temperature")) {
    TROUPE_TRY(gen.read_double("temperature", &out->temperature));
    if (!(out->temperature >= 0)) return gen.error("temperature", "must be >= 0");
  }
  if (gen.has("top_p")) {
    TROUPE_TRY(gen.read_double("top_p", &out->top_p));
    if (!(out->top_p > 0 && out->top_p <= 1)) return gen.error("top_p", "must be in (0, 1]");
  }
  if (gen.has("top_k")) {
    TROUPE_TRY(gen.read_int("top_k", &out->top_k));
    if (out->top_k < 0) return gen.error("top_k", "must be >= 0");
  }
  // do_sample false means greedy in transformers; vLLM ignores it and so do we (its defaults apply).
  return Status::success();
}

}  // namespace troupe::detail
