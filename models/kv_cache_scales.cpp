#include "models/kv_cache_scales.hpp"

#include <cmath>
#include <optional>
#include <vector>

namespace troupe {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The scale `name` holds, nothing when the loader has no such tensor, or an error.
Result<std::optional<float>> read_scale(const WeightLoader& weights, const std::string& name) {
  auto t = weights(name, {});  // checkpoints store a scalar; some a [1] vector
  if (!t.ok() && t.error().code != ErrorCode::not_found) t = weights(name, {1});
  if (!t.ok()) {
    if (t.error().code == ErrorCode::not_found) return std::optional<float>();
    return t.error();
  }
  float value = 0.0f;
  if (t->numel() != 1 || !convert_to_f32(t->dtype(), t->raw(), 1, &value))
    return make_error(ErrorCode::corrupt_data, "KV cache scale '" + name + "' must be one float");
  if (!std::isfinite(value) || !(value > 0.0f))
    return make_error(ErrorCode::corrupt_data,
                      "KV cache scale '" + name + "' must be finite and positive, got " + std::to_string(value));
  return std::optional<float>(value);
}

// The first of `names` the checkpoint has.
Result<std::optional<float>> first_scale(const WeightLoader& weights, const std::vector<std::string>& names) {
  for (const auto& name : names) {
    auto s = read_scale(weights, name);
    if (!s.ok() || s->has_value()) return s;
  }
  return std::optional<float>();
}

}  // namespace

bool is_kv_cache_scale_name(const std::string& name) {
  return ends_with(name, ".k_scale") || ends_with(name, ".v_scale") || ends_with(name, ".kv_scale");
}

Result<KvScales> load_kv_scales(const WeightLoader& weights, const std::string& prefix) {
  auto k = first_scale(weights, {prefix + "k_scale", prefix + "k_proj.k_scale", prefix + "attn.k_scale"});
  if (!k.ok()) return k.error();
  auto v = first_scale(weights, {prefix + "v_scale", prefix + "v_proj.v_scale", prefix + "attn.v_scale"});
  if (!v.ok()) return v.error();
  KvScales scales;
  if (!k->has_value() || !v->has_value()) {
    auto both = read_scale(weights, prefix + "kv_scale");
    if (!both.ok()) return both.error();
    if (both->has_value()) scales.k = scales.v = **both;
  }
  if (k->has_value()) scales.k = **k;
  if (v->has_value()) scales.v = **v;
  return scales;
}

}  // namespace troupe
