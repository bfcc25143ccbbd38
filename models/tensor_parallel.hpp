#pragma once
// Tensor parallel sharding of a Llama/Qwen2 model over `size` ranks (Megatron style):
//   column-parallel: q/k/v_proj, gate/up_proj (and their biases) -- each rank holds a row block
//                    of the [out, in] weight: its attention heads, its slice of the MLP;
//   row-parallel:    o_proj, down_proj -- each rank holds a column block; the partial outputs
//                    are summed by Collective::all_reduce_sum (their bias only on rank 0);
//   replicated:      embeddings, norms, the LM head (each rank computes full logits; rank 0's
//                    are sampled).
// A rank's model is the ordinary model built from the rank-local config (heads and
// intermediate size divided by `size`) over a loader that slices each full checkpoint tensor.
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/backend.hpp"
#include "runtime/collective.hpp"
#include "runtime/model.hpp"
#include "runtime/model_config.hpp"

namespace troupe {

// The config one rank's shard is built from. invalid_argument when the attention heads, the
// key/value heads or the intermediate size do not divide by `size` (the message names which).
Result<ModelConfig> tensor_parallel_config(const ModelConfig& full, int64_t size);

// Serves rank `rank`'s slice of every tensor `full` serves, for shapes the rank-local model asks.
WeightLoader tensor_parallel_loader(WeightLoader full, int64_t rank, int64_t size);

// Rank `collective.rank()`'s shard of layers `range` of the model in `dir` ("auto" or "dummy"
// weights), all-reducing through `collective`, which must outlive the model.
Result<std::unique_ptr<Model>> load_model_shard(const std::string& dir, const std::string& load_format,
                                                Backend& backend, LayerRange range, Collective& collective);

}  // namespace troupe
