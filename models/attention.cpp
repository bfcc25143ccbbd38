#include "models/attention.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/fp8_block.hpp"
#include "runtime/tensor_view.hpp"

namespace troupe {

Result<Tensor> load_weight(const WeightLoader& weights, Backend& backend, const std::string& name,
                           const std::vector<int64_t>& shape, bool allow_fp8) {
  auto host = weights(name, shape);
  if (!host.ok()) return host.error();
  if (host->has_block_scale() && !(allow_fp8 && backend.keeps_fp8_weights())) {
    host = dequantize_fp8_block(host.value(), name);
    if (!host.ok()) return host.error();
  }
  auto uploaded = backend.upload_weight(host.value());
  if (!uploaded.ok()) return make_error(uploaded.error().code, name + ": " + uploaded.error().message);
  return uploaded;
}

namespace {

// Host tensor `t` widened to fp32 (same shape); false for a non-float dtype.
bool widen_to_f32(const Tensor& t, Tensor* out) {
  Tensor wide = Tensor::empty(DType::f32, t.shape());
  if (!convert_to_f32(t.dtype(), t.raw(), size_t(t.numel()), wide.data<float>())) return false;
  *out = std::move(wide);
  return true;
}

// FP8 block parts concatenated with their scale rows, or an error when they cannot be (then the
// caller dequantizes). Every part but the last must have whole 128-row blocks.
Result<Tensor> fuse_fp8_parts(const std::vector<Tensor>& parts, std::vector<int64_t> shape) {
  int64_t scale_rows = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!parts[i].has_block_scale() || parts[i].dim() != 2 ||
        (i + 1 < parts.size() && parts[i].size(0) % kFp8BlockSize != 0))
      return make_error(ErrorCode::unsupported, "FP8 parts not on 128-row block boundaries");
    scale_rows += parts[i].block_scale().size(0);
  }
  Tensor fused = Tensor::empty(DType::f8_e4m3, shape);
  Tensor scale = Tensor::empty(DType::f32, {scale_rows, parts[0].block_scale().size(1)});
  size_t offset = 0, scale_offset = 0;
  for (const auto& p : parts) {
    std::memcpy(static_cast<char*>(fused.raw()) + offset, p.raw(), p.nbytes());
    std::memcpy(static_cast<char*>(scale.raw()) + scale_offset, p.block_scale().raw(), p.block_scale().nbytes());
    offset += p.nbytes();
    scale_offset += p.block_scale().nbytes();
  }
  fused.set_block_scale(std::move(scale));
  return fused;
}

std::string joined_names(const std::vector<WeightPart>& parts) {
  std::string names;
  for (const auto& p : parts) names += (names.empty() ? "" : " + ") + p.name;
  return names;
}

}  // namespace

Result<Tensor> load_fused_weight(const WeightLoader& weights, Backend& backend, const std::vector<WeightPart>& parts) {
  if (parts.empty()) return make_error(ErrorCode::invalid_argument, "load_fused_weight: no parts");
  std::vector<int64_t> shape = parts[0].shape;
  int64_t total_rows = 0;
  for (const auto& p : parts) {
    if (p.shape.empty() || p.shape.size() != shape.size() ||
        !std::equal(p.shape.begin() + 1, p.shape.end(), shape.begin() + 1))
      return make_error(ErrorCode::invalid_argument, p.name + ": shape " + shape_to_string(p.shape) +
                                                         " cannot be concatenated with " + parts[0].name + "'s " +
                                                         shape_to_string(shape));
    total_rows += p.shape[0];
  }
  shape[0] = total_rows;
  std::vector<Tensor> loaded;
  bool all_fp8 = true;
  for (const auto& p : parts) {
    auto host = weights(p.name, p.shape);
    if (!host.ok()) return host.error();
    if (host->device() != Device::cpu) return make_error(ErrorCode::invalid_argument, p.name + ": not a host tensor");
    if (host->shape() != p.shape)
      return make_error(ErrorCode::invalid_argument, p.name + ": expected shape " + shape_to_string(p.shape) +
                                                         ", got " + shape_to_string(host->shape()));
    all_fp8 = all_fp8 && host->has_block_scale();
    loaded.push_back(std::move(host.value()));
  }
  // Parts read back to back into one buffer (StageReader's fused groups): that buffer is the
  // fused weight; nothing to copy.
  bool in_place = !loaded[0].has_block_scale();
  for (size_t i = 0; in_place && i + 1 < loaded.size(); ++i)
    in_place = loaded[i + 1].dtype() == loaded[0].dtype() && !loaded[i + 1].has_block_scale() &&
               loaded[i].is_followed_by(loaded[i + 1]);
  if (in_place) {
    auto uploaded = backend.upload_weight(loaded[0].extended_to(shape));
    if (!uploaded.ok())
      return make_error(uploaded.error().code, joined_names(parts) + ": " + uploaded.error().message);
    return uploaded;
  }
  if (all_fp8 && backend.keeps_fp8_weights()) {
    auto fused = fuse_fp8_parts(loaded, shape);
    if (fused.ok()) {
      auto uploaded = backend.upload_weight(fused.value());
      if (!uploaded.ok())
        return make_error(uploaded.error().code, joined_names(parts) + ": " + uploaded.error().message);
      return uploaded;
    }
  }
  Tensor fused;  // [total_rows, ...] on the host, the first part's dtype (fp32 once widened)
  size_t offset = 0;  // bytes written so far
  for (size_t i = 0; i < parts.size(); ++i) {
    const WeightPart& p = parts[i];
    Tensor part = std::move(loaded[i]);
    if (part.has_block_scale()) {
      auto wide = dequantize_fp8_block(part, p.name);
      if (!wide.ok()) return wide.error();
      part = std::move(wide.value());
    }
    if (!fused.defined()) fused = Tensor::empty(part.dtype(), shape);
    if (part.dtype() != fused.dtype()) {
      // Mixed dtypes: widen what is there and this part to fp32.
      Tensor wide;
      if ((fused.dtype() != DType::f32 && !widen_to_f32(fused, &wide)) ||
          (part.dtype() != DType::f32 && !widen_to_f32(part, &part)))
        return make_error(ErrorCode::unsupported, p.name + ": dtype " + std::string(dtype_name(part.dtype())) +
                                                      " cannot be fused with " + parts[0].name + "'s " +
                                                      std::string(dtype_name(fused.dtype())));
      if (wide.defined()) {
        offset = offset / dtype_size(fused.dtype()) * sizeof(float);
        fused = std::move(wide);
      }
    }
    std::memcpy(static_cast<char*>(fused.raw()) + offset, part.raw(), part.nbytes());
    offset += part.nbytes();
  }
  auto uploaded = backend.upload_weight(fused);
  if (!uploaded.ok())
    return make_error(uploaded.error().code, joined_names(parts) + ": " + uploaded.error().message);
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
  const std::string q = prefix + "q_proj.", k = prefix + "k_proj.", v = prefix + "v_proj.";
  auto qkv = load_fused_weight(
      weights, backend,
      {{q + "weight", {q_dim, hidden}}, {k + "weight", {kv_dim, hidden}}, {v + "weight", {kv_dim, hidden}}});
  if (!qkv.ok()) return qkv.error();
  layer->qkv_weight_ = std::move(qkv.value());
  if (qkv_bias) {
    auto b =
        load_fused_weight(weights, backend, {{q + "bias", {q_dim}}, {k + "bias", {kv_dim}}, {v + "bias", {kv_dim}}});
    if (!b.ok()) return b.error();
    layer->qkv_bias_ = std::move(b.value());
  }
  if (config.qk_norm) {
    auto q_norm = load_weight(weights, backend, prefix + "q_norm.weight", {config.head_dim});
    if (!q_norm.ok()) return q_norm.error();
    auto k_norm = load_weight(weights, backend, prefix + "k_norm.weight", {config.head_dim});
    if (!k_norm.ok()) return k_norm.error();
    layer->qk_norm_ = {std::move(q_norm.value()), std::move(k_norm.value()), float(config.rms_norm_eps)};
  }
  if (backend.kv_cache_dtype() == DType::f8_e4m3) {
    auto scales = load_kv_scales(weights, prefix);
    if (!scales.ok()) return scales.error();
    layer->kv_scales_ = scales.value();
  }
  auto o = load_weight(weights, backend, prefix + "o_proj.weight", {hidden, q_dim});
  if (!o.ok()) return o.error();
  layer->o_weight_ = std::move(o.value());
  if (o_bias) {
    auto b = load_weight(weights, backend, prefix + "o_proj.bias", {hidden});
    if (!b.ok()) return b.error();
    layer->o_bias_ = std::move(b.value());
  }
  return layer;
}

std::vector<KvComponentSpec> LlamaAttention::kv_components() const {
  return {{"k", num_kv_heads_, head_dim_}, {"v", num_kv_heads_, head_dim_}};
}

void LlamaAttention::forward(const Tensor& x, const AttentionMetadata& meta, KvCache& cache, int64_t cache_layer,
                             Tensor out) {
  const int64_t n = meta.num_tokens, qkv_dim = (num_heads_ + 2 * num_kv_heads_) * head_dim_;
  Tensor qkv = backend_.empty(DType::f32, {n, qkv_dim});  // one product; rows [q heads | k heads | v heads]
  backend_.linear(x, qkv_weight_, qkv_bias_, qkv);
  // A few decode tokens' rope, attention and merge stream little: o's weight may move meanwhile.
  if (n <= Backend::kPrefetchMaxTokens) backend_.prefetch_weight(o_weight_);
  Tensor& k_cache = cache.component(cache_layer, 0);
  Tensor& v_cache = cache.component(cache_layer, 1);
  Tensor q = backend_.empty(DType::f32, {n, num_heads_, head_dim_});
  backend_.qkv_rope_write_kv(qkv, meta.positions, inv_freq_, meta.slot_mapping, k_cache, v_cache, q, qk_norm_);
  Tensor attn = backend_.empty(DType::f32, {n, num_heads_, head_dim_});
  backend_.paged_attention(q, k_cache, v_cache, meta, scale_, attn);
  backend_.linear(attn.reshape({n, num_heads_ * head_dim_}), o_weight_, o_bias_, out);
}

}  // namespace troupe
