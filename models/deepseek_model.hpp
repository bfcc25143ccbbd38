#pragma once
// DeepseekV3ForCausalLM (one stage of it): embeddings on the first stage; decoder layers of MLA
// (models/mla_attention.hpp) and a dense SwiGLU MLP (layers < first_k_dense_replace) or the routed
// MoE (models/moe.hpp); final norm + LM head (never tied) on the last. The MTP layer stored at index
// num_hidden_layers is never read. Runs on backends with supports_mla_moe() (CPU and CUDA), without
// step graphs; elsewhere load refuses in one line. Tensor parallel (models/tensor_parallel.hpp):
// built from the rank-local config, it all-reduces after o_proj and after every MLP / MoE; the
// latent KV cache is replicated; embeddings and LM head are vocab-parallel (models/vocab_parallel.hpp).
// With MoeConfig::dispatch_tokens the MoE layers send tokens to their experts' ranks and back
// (MoeMlp::forward_dispatched) before that all-reduce.
#include <memory>
#include <vector>

#include "models/llama_model.hpp"

namespace troupe {

class MoeMlp;

class DeepseekModel final : public Model {
 public:
  static Result<std::unique_ptr<DeepseekModel>> load(const ModelConfig& config, Backend& backend, LayerRange range,
                                                     const WeightLoader& weights);

  const ModelConfig& config() const override { return config_; }
  LayerRange layer_range() const override { return range_; }
  KvCacheSpec kv_cache_spec(int64_t num_blocks, int64_t block_size) const override;
  Result<Tensor> forward(const ForwardBatch& batch, KvCache& cache, LogitsMode mode) override;
  Status set_tensor_parallel(Collective* collective) override;
  // Decode steps record as step graphs on the CUDA backend when nothing in them reads the device
  // on the host (the MoE layers on the grouped path; the MLA decode kernel splits each token's own
  // context); a step that does (the per-expert loop) is dropped and runs eagerly.
  bool supports_step_graphs() const override { return collective_ == nullptr; }

 private:
  DeepseekModel(const ModelConfig& config, Backend& backend, LayerRange range)
      : config_(config), backend_(backend), range_(range) {}
  Status check_cache(const KvCache& cache) const;

  ModelConfig config_;
  Backend& backend_;
  LayerRange range_;
  VocabParallel vocab_;  // embedding (first stage) and LM head (last stage), vocab-parallel under TP
  Tensor final_norm_;    // [hidden], last stage
  std::vector<DecoderLayer> layers_;
  std::vector<MoeMlp*> moe_layers_;  // [layers]: the layer's MoE (owned by layers_), null where dense
  Collective* collective_ = nullptr;  // tensor parallel: sums o_proj's and the MLP's partial outputs
};

}  // namespace troupe
