#pragma once
// The per-tensor scales of an fp8 KV cache (--kv-cache-dtype fp8), vLLM's k_scale and v_scale:
// one for K and one for V per attention layer, read from the checkpoint when it has them, else 1
// (vLLM's default). runtime/kv_cache.hpp says how the cache applies them.
#include <string>

#include "runtime/model.hpp"
#include "runtime/result.hpp"

namespace troupe {

struct KvScales {
  float k = 1.0f;
  float v = 1.0f;
};

// The scales of the attention layer under `prefix` ("model.layers.N.self_attn."), by the names
// vLLM's loader accepts: prefix + "k_scale" / "v_scale" (compressed-tensors), prefix +
// "k_proj.k_scale" / "v_proj.v_scale" (ModelOpt), prefix + "attn.k_scale" / "attn.v_scale" (vLLM's
// own), else one prefix + "kv_scale" for both (AutoFP8). A name the loader answers not_found for
// is absent; a present scale must be one ([] or [1]) finite, positive float, else an error naming it.
Result<KvScales> load_kv_scales(const WeightLoader& weights, const std::string& prefix);

// Whether `name` is one of those scale names (the dummy loader has none of them).
bool is_kv_cache_scale_name(const std::string& name);

}  // namespace troupe
