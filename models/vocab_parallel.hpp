#pragma once
// The vocabulary tables of one stage (embedding on the first, LM head on the last), split over
// the tensor-parallel ranks as vLLM's VocabParallelEmbedding / ParallelLMHead:
//
//   vocabulary V padded up to Vp = ceil(V / size) * size; rank r holds rows [r Vp/size, (r+1) Vp/size),
//   the padding rows (past V, on the last ranks) zero.
//   embed:   ids in the rank's range look up their local row, the others the extra zero row kept
//            after the shard (vLLM masks them to zero instead); all_reduce_sum joins the ranks.
//   lm_head: [rows, Vp/size] logits of the local rows, all_gather'ed into [rows, V]; the padding
//            columns are dropped by the gather, so they are never sampled.
//   tied (Qwen2/Qwen3): the LM head is a row view of the embedding shard, without the zero row.
//
// Memory per rank at R1's shape (vocab 129280 x hidden 7168, bf16, embedding and LM head untied):
// replicated 2 x 129280 x 7168 x 2 B = 3.71 GB (1.85 GB each); at TP=8 16160 rows a table (+1 zero
// row for the embedding), 0.46 GB per rank for both: 3.24 GB less per GPU. The LM head's product
// per decode step reads 1/8 of its weights, at the price of one all-gather of [rows, V] fp32 and
// one all-reduce of [tokens, hidden] for the embedding.
// With size 1 nothing changes: the full tables, no zero row, no collective.
#include <cstdint>
#include <vector>

#include "runtime/backend.hpp"
#include "runtime/collective.hpp"
#include "runtime/model.hpp"
#include "runtime/model_config.hpp"

namespace troupe {

// Rank `rank` of `size`'s block of a vocabulary of `vocab` rows.
struct VocabShard {
  int64_t vocab = 0;
  int64_t rank = 0;
  int64_t size = 1;
  int64_t num_rows() const { return (vocab + size - 1) / size; }  // Vp / size, padding included
  int64_t begin() const { return rank * num_rows(); }
  // Rows below V: the ones the checkpoint has (the rest are padding).
  int64_t num_real_rows() const {
    const int64_t real = vocab - begin();
    return real < 0 ? 0 : (real < num_rows() ? real : num_rows());
  }
  static VocabShard of(const ModelConfig& config) {
    return VocabShard{config.vocab_size, config.vocab_parallel_rank, config.vocab_parallel_size};
  }
};

class VocabParallel {
 public:
  // Loads the embedding (`embed`) and/or the LM head (`head`) of `config`'s shard; the loader
  // serves "model.embed_tokens.weight" / "lm_head.weight" as [num_rows, hidden] (the rank's rows,
  // padding zero: tensor_parallel_loader). Tied configs take the LM head from the embedding.
  static Result<VocabParallel> load(const ModelConfig& config, const WeightLoader& weights, Backend& backend,
                                    bool embed, bool head);

  // invalid_argument when the collective's size is not the config's vocab_parallel_size.
  Status set_collective(Collective* collective);

  // h [n, hidden] = the embeddings of `ids` (every id already checked to be < V).
  Status embed(Backend& backend, const std::vector<int32_t>& ids, Tensor h);
  // logits [rows, V] = hidden [rows, hidden] times the LM head.
  Status lm_head(Backend& backend, const Tensor& hidden, Tensor logits);

 private:
  Status check_collective() const;

  VocabShard shard_;
  Tensor embed_tokens_;  // [num_rows (+1 zero row when split), hidden]
  Tensor lm_head_;       // [num_rows, hidden]
  Collective* collective_ = nullptr;
};

}  // namespace troupe
