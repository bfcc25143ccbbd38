#pragma once
// A causal LM (or one pipeline stage of it) written against the Backend interface.
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/collective.hpp"
#include "runtime/forward_batch.hpp"
#include "runtime/kv_cache.hpp"
#include "runtime/model_config.hpp"
#include "runtime/result.hpp"
#include "runtime/tensor.hpp"

namespace troupe {

// The decoder layers a pipeline stage owns: [begin, end). end = -1: up to the last layer.
// The stage holding layer 0 also holds the embeddings; the one holding the last layer holds the
// final norm and the LM head.
struct LayerRange {
  int64_t begin = 0;
  int64_t end = -1;
  int64_t num_layers() const { return end - begin; }
};

enum class LogitsMode {
  last_token,  // [num seqs with needs_logits, vocab]: the sampler's input
  all_tokens,  // [num_tokens, vocab]: tests against an oracle, prompt logprobs
};


// A host tensor of checkpoint weights by HF name, checked against `shape`. The model loader wraps
// a WeightStore in one; tests can serve weights from memory.
using WeightLoader = std::function<Result<Tensor>(const std::string& name, const std::vector<int64_t>& shape)>;

class Model {
 public:
  virtual ~Model() = default;

  virtual const ModelConfig& config() const = 0;
  virtual LayerRange layer_range() const = 0;  // resolved: end is never -1
  bool is_first_stage() const { return layer_range().begin == 0; }
  bool is_last_stage() const { return layer_range().end == config().num_hidden_layers; }

  // The KV cache this stage needs (one entry per owned layer; components as the attention needs).
  virtual KvCacheSpec kv_cache_spec(int64_t num_blocks, int64_t block_size) const = 0;

  // One step over the batch. Writes the new tokens' K/V into `cache`, then returns:
  //   last stage: fp32 logits, [num seqs needing logits, vocab] or [num_tokens, vocab] (mode);
  //   other stages: the hidden states [num_tokens, hidden] for the next stage's
  //   ForwardBatch::hidden_states. A non-first stage reads batch.hidden_states instead of token ids.
  // Errors (invalid_argument) name the bad field of the batch. One forward at a time per model
  // (the backend's thread pool is not reentrant).
  virtual Result<Tensor> forward(const ForwardBatch& batch, KvCache& cache,
                                 LogitsMode mode = LogitsMode::last_token) = 0;

  // Whether a step of this model may be recorded and replayed as a step graph
  // (backends/graphed_model.hpp): its forward touches only its backend, no other process or thread.
  virtual bool supports_step_graphs() const { return false; }

  // Makes this model one rank of a tensor-parallel group (its weights are that rank's shard; see
  // models/tensor_parallel.hpp): forward sums the row-parallel outputs through `collective`.
  virtual Status set_tensor_parallel(Collective* collective) {
    (void)collective;
    return make_error(ErrorCode::unsupported, "this model does not support tensor parallelism");
  }
};

}  // namespace troupe
