#pragma once
// Tensor parallel sharding of a model over `size` ranks (Megatron style):
//   column-parallel: q/k/v_proj, gate/up_proj (and their biases); DeepSeek-V3's q_proj or q_b_proj
//                    and kv_b_proj -- each rank holds a row block of the [out, in] weight: its
//                    attention heads (contiguous), its slice of the MLP;
//   row-parallel:    o_proj, down_proj -- each rank holds a column block; the partial outputs
//                    are summed by Collective::all_reduce_sum (their bias only on rank 0);
//   vocab-parallel:  the embedding and the LM head (models/vocab_parallel.hpp): rank r holds
//                    rows [r Vp / size, (r + 1) Vp / size) of the vocabulary padded to Vp, a
//                    multiple of size (padding rows zero); the embedding sums over the ranks, the
//                    LM head's logit blocks are all-gathered, so every rank has the full logits
//                    (rank 0's are sampled). At R1's shape (129280 x 7168, bf16) that is 0.46 GB
//                    of the two tables per rank at TP=8 instead of 3.71 GB.
//   replicated:      norms; MLA's q_a_proj, kv_a_proj_with_mqa and their norms, so every
//                    rank writes the same full latent KV cache (vLLM's choice: per-rank cache
//                    memory is the whole latent cache); the MoE router and its bias.
//   expert-parallel: DeepSeek-V3's routed experts (".mlp.experts.N.") -- rank r loads experts
//                    [r E / size, (r + 1) E / size) whole and never asks for the others; its
//                    partial MoE output joins the sum after the MLP. The shared experts are
//                    column/row-parallel like a dense MLP.
// A rank's model is the ordinary model built from the rank-local config (heads, intermediate size
// and the shared experts' intermediate divided by `size`; the expert range in MoeConfig) over a
// loader that slices each full checkpoint tensor (FP8 ones are dequantized to fp32 before).
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/backend.hpp"
#include "runtime/collective.hpp"
#include "runtime/model.hpp"
#include "runtime/model_config.hpp"

namespace troupe {

// The config rank `rank`'s shard is built from. invalid_argument, naming the field, when the
// attention heads, the key/value heads, the intermediate size (of dense MLP layers),
// n_routed_experts or moe_intermediate_size * n_shared_experts do not divide by `size`.
Result<ModelConfig> tensor_parallel_config(const ModelConfig& full, int64_t size, int64_t rank = 0);

// Serves rank `rank`'s slice of every tensor `full` serves, for shapes the rank-local model asks;
// `vocab_size` is the whole vocabulary (the embedding's and LM head's rows in `full`).
WeightLoader tensor_parallel_loader(WeightLoader full, int64_t rank, int64_t size, int64_t vocab_size);

// Rank `collective.rank()`'s shard of layers `range` of the model in `dir` ("auto" or "dummy"
// weights), all-reducing through `collective`, which must outlive the model. dispatch_tokens:
// MoE layers send tokens to their experts' ranks (MoeConfig::dispatch_tokens,
// --all2all-backend all_to_all).
Result<std::unique_ptr<Model>> load_model_shard(const std::string& dir, const std::string& load_format,
                                                Backend& backend, LayerRange range, Collective& collective,
                                                bool dispatch_tokens = false);

}  // namespace troupe
