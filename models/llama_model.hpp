#pragma once
// LlamaForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM (one stage of them) on the shared stage
// skeleton (models/decoder_model.hpp): GQA attention and a SwiGLU MLP, each behind its interface,
// and a K/V cache of two components.
#include <memory>

#include "models/decoder_model.hpp"

namespace troupe {

class LlamaModel final : public DecoderModel {
 public:
  // Loads the weights of `range` only. Errors: unsupported architecture, bad range, and any
  // missing or mis-shaped tensor (named).
  static Result<std::unique_ptr<LlamaModel>> load(const ModelConfig& config, Backend& backend, LayerRange range,
                                                  const WeightLoader& weights);

  KvCacheSpec kv_cache_spec(int64_t num_blocks, int64_t block_size) const override;

 private:
  LlamaModel(const ModelConfig& config, Backend& backend, LayerRange range) : DecoderModel(config, backend, range) {}
  Status check_cache(const KvCache& cache) const override;
};

}  // namespace troupe
