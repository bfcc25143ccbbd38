#pragma once
// The paged KV cache of one pipeline stage.
//
// Layout (shared with the GPU kernels): the cache holds `num_blocks` blocks of `block_size` token
// slots. A sequence's token at position p lives in block block_table[p / block_size], slot
// p % block_size; the flat slot index is block_id * block_size + p % block_size.
// Each layer holds one tensor per component of the spec (Llama: "k" and "v"; an MLA model: one
// "latent" with num_heads 1), each contiguous, row-major:
//     [num_blocks, block_size, num_heads, head_dim]   (spec.dtype: Backend::kv_cache_dtype, fp32
//                                                      on the CPU backend, bf16 on CUDA with bf16 weights,
//                                                      f8_e4m3 on either with --kv-cache-dtype fp8)
// so one token's entry of one component is num_heads * head_dim contiguous elements.
// An f8_e4m3 cache is per-tensor scaled, as vLLM's fp8 cache: each (layer, component) tensor has
// one scale (spec.scales: the checkpoint's k_scale / v_scale, else 1), carried by the tensor
// (Tensor::tensor_scale). Stored byte = e4m3(x / scale), saturated to +-448 (never NaN from a
// finite x); read back as e4m3_to_f32(byte) * scale.
// Block ids and tables are owned by the block manager; this class only holds the memory.
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/result.hpp"
#include "runtime/tensor.hpp"

namespace troupe {

struct KvComponentSpec {
  std::string name;  // "k", "v", "latent", ...
  int64_t num_heads = 0;
  int64_t head_dim = 0;
};

struct KvCacheSpec {
  int64_t num_layers = 0;  // layers of this stage
  int64_t num_blocks = 0;
  int64_t block_size = 16;
  DType dtype = DType::f32;
  std::vector<KvComponentSpec> components;  // the same for every layer
  // Per-tensor scales of an f8_e4m3 cache, [layer][component] (num_layers * components.size()
  // values), or empty: every scale 1. Other dtypes ignore them.
  std::vector<float> scales;

  float scale(int64_t layer, int64_t component_index) const {
    const size_t i = size_t(layer * int64_t(components.size()) + component_index);
    return i < scales.size() ? scales[i] : 1.0f;
  }

  int64_t bytes_per_token_per_layer() const;
  int64_t total_bytes() const;
  // The number of blocks of `block_size` that fit in `bytes` for this layer count and components.
  static int64_t blocks_for_bytes(const KvCacheSpec& shape_only, int64_t bytes);
};

class KvCache {
 public:
  // Allocates zeroed host memory for every layer and component. Errors on a non-positive size.
  static Result<KvCache> create(const KvCacheSpec& spec);
  // Adopts tensors allocated by a backend (device memory), ordered [layer][component], and sets
  // their tensor_scale from spec.scales.
  static KvCache wrap(const KvCacheSpec& spec, std::vector<Tensor> tensors);
  // invalid_argument unless spec.scales is empty or holds num_layers * components finite,
  // positive values.
  static Status check_scales(const KvCacheSpec& spec);

  const KvCacheSpec& spec() const { return spec_; }
  int64_t num_blocks() const { return spec_.num_blocks; }
  int64_t block_size() const { return spec_.block_size; }
  int64_t num_layers() const { return spec_.num_layers; }

  // [num_blocks, block_size, num_heads, head_dim] of `layer` (0-based within this stage).
  Tensor& component(int64_t layer, int64_t component_index) {
    return tensors_[size_t(layer * int64_t(spec_.components.size()) + component_index)];
  }
  const Tensor& component(int64_t layer, int64_t component_index) const {
    return tensors_[size_t(layer * int64_t(spec_.components.size()) + component_index)];
  }
  // The index of a component by name, or -1.
  int64_t component_index(const std::string& name) const;

 private:
  KvCacheSpec spec_;
  std::vector<Tensor> tensors_;  // [layer][component]
};

}  // namespace troupe
