#pragma once
// The stage skeleton the decoder-only models share (LlamaModel, DeepseekModel): the layer range,
// embeddings or the previous stage's hidden states in, then per layer norm -> attention -> norm ->
// MLP with the residual added lazily (add_rmsnorm), the tensor-parallel all-reduces after the
// attention and the MLP, and on the last stage the final norm and the LM head over the rows asked
// for. A model supplies its layers, its KV cache layout and, where it differs, its MLP step.
#include <memory>
#include <vector>

#include "models/attention.hpp"
#include "models/mlp.hpp"
#include "models/vocab_parallel.hpp"
#include "runtime/backend.hpp"
#include "runtime/model.hpp"

namespace troupe {

struct DecoderLayer {
  Tensor input_norm;          // [hidden]
  Tensor post_attention_norm; // [hidden]
  std::unique_ptr<AttentionLayer> attention;
  std::unique_ptr<MlpLayer> mlp;
};

class DecoderModel : public Model {
 public:
  const ModelConfig& config() const override { return config_; }
  LayerRange layer_range() const override { return range_; }
  Result<Tensor> forward(const ForwardBatch& batch, KvCache& cache, LogitsMode mode) override;
  Status set_tensor_parallel(Collective* collective) override;
  bool supports_step_graphs() const override { return collective_ == nullptr; }

 protected:
  DecoderModel(const ModelConfig& config, Backend& backend, LayerRange range)
      : config_(config), backend_(backend), range_(range) {}

  // Resolves range.end < 0 to the last layer; an error names a range outside the model's layers.
  static Status resolve_range(const ModelConfig& config, LayerRange& range);
  // The stage's ends: embeddings (first stage) and LM head (last), loaded before the layers; the
  // final norm (last stage) after them, so tensors are read in checkpoint order.
  Status load_vocab(const WeightLoader& weights);
  Status load_final_norm(const WeightLoader& weights);
  // Layer `prefix`'s two norms into `layer`.
  Status load_layer_norms(const WeightLoader& weights, const std::string& prefix, DecoderLayer& layer);

  // An error when `cache` is not laid out as this stage's kv_cache_spec.
  virtual Status check_cache(const KvCache& cache) const = 0;
  // Layer i's MLP on normed, written to delta (before the tensor-parallel all-reduce).
  virtual Status mlp_step(size_t i, const Tensor& normed, Tensor delta);

  ModelConfig config_;
  Backend& backend_;
  LayerRange range_;
  VocabParallel vocab_;  // embedding (first stage) and LM head (last stage), vocab-parallel under TP
  Tensor final_norm_;    // [hidden], last stage
  std::vector<DecoderLayer> layers_;
  Collective* collective_ = nullptr;  // tensor parallel: sums the row-parallel outputs
};

}  // namespace troupe
