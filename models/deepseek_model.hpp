#pragma once
// DeepseekV3ForCausalLM (one stage of it) on the shared stage skeleton (models/decoder_model.hpp):
// embeddings on the first stage; decoder layers of MLA
// (models/mla_attention.hpp) and a dense SwiGLU MLP (layers < first_k_dense_replace) or the routed
// MoE (models/moe.hpp); final norm + LM head (never tied) on the last. The MTP layer stored at index
// num_hidden_layers is never read. Runs on backends with supports_mla_moe() (CPU and CUDA);
// elsewhere load refuses in one line. Decode steps record as step graphs on the CUDA backend when
// nothing in them reads the device on the host (the MoE layers on the grouped path; the MLA decode
// kernel splits each token's own context); a step that does (the per-expert loop) is dropped and
// runs eagerly. Tensor parallel (models/tensor_parallel.hpp):
// built from the rank-local config, it all-reduces after o_proj and after every MLP / MoE; the
// latent KV cache is replicated; embeddings and LM head are vocab-parallel (models/vocab_parallel.hpp).
// With MoeConfig::dispatch_tokens the MoE layers send tokens to their experts' ranks and back
// (MoeMlp::forward_dispatched) before that all-reduce.
#include <memory>
#include <vector>

#include "models/decoder_model.hpp"

namespace troupe {

class MoeMlp;

class DeepseekModel final : public DecoderModel {
 public:
  static Result<std::unique_ptr<DeepseekModel>> load(const ModelConfig& config, Backend& backend, LayerRange range,
                                                     const WeightLoader& weights);

  KvCacheSpec kv_cache_spec(int64_t num_blocks, int64_t block_size) const override;

 private:
  DeepseekModel(const ModelConfig& config, Backend& backend, LayerRange range)
      : DecoderModel(config, backend, range) {}
  Status check_cache(const KvCache& cache) const override;
  // The MoE layers under MoeConfig::dispatch_tokens send their tokens to the experts' ranks.
  Status mlp_step(size_t i, const Tensor& normed, Tensor delta) override;

  std::vector<MoeMlp*> moe_layers_;  // [layers]: the layer's MoE (owned by layers_), null where dense
};

}  // namespace troupe
