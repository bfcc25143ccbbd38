#pragma once
// LlamaForCausalLM, Qwen2ForCausalLM and Qwen3ForCausalLM (one stage of them): embeddings on the first stage,
// decoder layers (attention + MLP, each behind its interface), final norm + LM head on the last.
#include <memory>
#include <vector>

#include "models/attention.hpp"
#include "runtime/backend.hpp"
#include "models/mlp.hpp"
#include "runtime/model.hpp"
#include "models/vocab_parallel.hpp"

namespace troupe {

struct DecoderLayer {
  Tensor input_norm;          // [hidden]
  Tensor post_attention_norm; // [hidden]
  std::unique_ptr<AttentionLayer> attention;
  std::unique_ptr<MlpLayer> mlp;
};

class LlamaModel final : public Model {
 public:
  // Loads the weights of `range` only. Errors: unsupported architecture, bad range, and any
  // missing or mis-shaped tensor (named).
  static Result<std::unique_ptr<LlamaModel>> load(const ModelConfig& config, Backend& backend, LayerRange range,
                                                  const WeightLoader& weights);

  const ModelConfig& config() const override { return config_; }
  LayerRange layer_range() const override { return range_; }
  KvCacheSpec kv_cache_spec(int64_t num_blocks, int64_t block_size) const override;
  Result<Tensor> forward(const ForwardBatch& batch, KvCache& cache, LogitsMode mode) override;
  Status set_tensor_parallel(Collective* collective) override;
  bool supports_step_graphs() const override { return collective_ == nullptr; }

 private:
  LlamaModel(const ModelConfig& config, Backend& backend, LayerRange range)
      : config_(config), backend_(backend), range_(range) {}
  Status check_cache(const KvCache& cache) const;

  ModelConfig config_;
  Backend& backend_;
  LayerRange range_;
  VocabParallel vocab_;  // embedding (first stage) and LM head (last stage), vocab-parallel under TP
  Tensor final_norm_;    // [hidden], last stage
  std::vector<DecoderLayer> layers_;
  Collective* collective_ = nullptr;  // tensor parallel: sums the row-parallel outputs
};

}  // namespace troupe
