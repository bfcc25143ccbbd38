#include "runtime/kv_cache.hpp"

#include <cmath>
#include <new>

namespace troupe {

int64_t KvCacheSpec::bytes_per_token_per_layer() const {
  int64_t elems = 0;
  for (const auto& c : components) elems += c.num_heads * c.head_dim;
  return elems * int64_t(dtype_size(dtype));
}

int64_t KvCacheSpec::total_bytes() const {
  return bytes_per_token_per_layer() * num_layers * num_blocks * block_size;
}

int64_t KvCacheSpec::blocks_for_bytes(const KvCacheSpec& shape_only, int64_t bytes) {
  int64_t per_block = shape_only.bytes_per_token_per_layer() * shape_only.num_layers * shape_only.block_size;
  return per_block <= 0 ? 0 : bytes / per_block;
}

KvCache KvCache::wrap(const KvCacheSpec& spec, std::vector<Tensor> tensors) {
  KvCache cache;
  cache.spec_ = spec;
  cache.tensors_ = std::move(tensors);
  const int64_t num_components = int64_t(spec.components.size());
  for (size_t i = 0; i < cache.tensors_.size() && num_components > 0; ++i)
    cache.tensors_[i].set_tensor_scale(spec.scale(int64_t(i) / num_components, int64_t(i) % num_components));
  return cache;
}

Result<KvCache> KvCache::create(const KvCacheSpec& spec) {
  if (spec.num_layers <= 0 || spec.num_blocks <= 0 || spec.block_size <= 0 || spec.components.empty()) {
    return make_error(ErrorCode::invalid_argument,
                      "KV cache: num_layers (" + std::to_string(spec.num_layers) + "), num_blocks (" +
                          std::to_string(spec.num_blocks) + "), block_size (" + std::to_string(spec.block_size) +
                          ") and components must be positive");
  }
  for (const auto& c : spec.components) {
    if (c.num_heads <= 0 || c.head_dim <= 0) {
      return make_error(ErrorCode::invalid_argument, "KV cache: component '" + c.name + "' has an empty shape");
    }
  }
  TROUPE_TRY(check_scales(spec));
  std::vector<Tensor> tensors;
  try {
    for (int64_t layer = 0; layer < spec.num_layers; ++layer) {
      for (const auto& c : spec.components) {
        tensors.push_back(Tensor::zeros(spec.dtype, {spec.num_blocks, spec.block_size, c.num_heads, c.head_dim}));
      }
    }
  } catch (const std::bad_alloc&) {
    return make_error(ErrorCode::out_of_resources,
                      "KV cache: cannot allocate " + std::to_string(spec.total_bytes()) + " bytes");
  }
  return wrap(spec, std::move(tensors));
}

Status KvCache::check_scales(const KvCacheSpec& spec) {
  if (!spec.scales.empty() && int64_t(spec.scales.size()) != spec.num_layers * int64_t(spec.components.size()))
    return make_error(ErrorCode::invalid_argument, "KV cache: " + std::to_string(spec.scales.size()) +
                                                       " scales for " + std::to_string(spec.num_layers) +
                                                       " layers of " + std::to_string(spec.components.size()) +
                                                       " components");
  for (float s : spec.scales)
    if (!(s > 0.0f) || !std::isfinite(s))
      return make_error(ErrorCode::invalid_argument,
                        "KV cache: a scale must be finite and positive, got " + std::to_string(s));
  return Status::success();
}

int64_t KvCache::component_index(const std::string& name) const {
  for (size_t i = 0; i < spec_.components.size(); ++i) {
    if (spec_.components[i].name == name) return int64_t(i);
  }
  return -1;
}

}  // namespace troupe
