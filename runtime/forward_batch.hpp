#pragma once
// One engine step's input to a model: the new tokens of several sequences, concatenated, each
// sequence either a prefill (chunk) or a decode (one token). Sequences are in order; sequence s
// owns the tokens [token_begin(s), token_begin(s) + num_new_tokens).
#include <cstdint>
#include <vector>

#include "runtime/tensor.hpp"

namespace troupe {

struct SequenceSlice {
  int32_t num_new_tokens = 0;  // tokens of this sequence in this step (prefill chunk or 1)
  int32_t context_len = 0;     // tokens cached after this step: cached before + num_new_tokens
  // Block ids of this sequence in the paged KV cache, owned by the block manager; must cover
  // context_len tokens. Valid for the duration of the forward call.
  const std::vector<int32_t>* block_table = nullptr;
  bool needs_logits = true;  // the last token's logits are returned (the sampler needs them)
  // The logits of this slice's first num_prompt_logits tokens are returned too (prompt logprobs),
  // after every sequence's last-token row: see AttentionMetadata::logits_rows.
  int32_t num_prompt_logits = 0;
};

struct ForwardBatch {
  std::vector<int32_t> token_ids;  // [num_tokens]
  std::vector<int32_t> positions;  // [num_tokens]; token i of sequence s: context_len - num_new + i
  std::vector<SequenceSlice> seqs;
  // Non-first pipeline stages: the previous stage's output hidden states [num_tokens, hidden];
  // token_ids are then ignored except for their count.
  Tensor hidden_states;
  // Blocks per row of the step's block tables: 0 sizes them to the longest context; a step graph
  // sets the width its recording was made with (every context must fit).
  int64_t block_table_width = 0;

  int64_t num_tokens() const { return int64_t(positions.size()); }
  int64_t num_seqs() const { return int64_t(seqs.size()); }
};

}  // namespace troupe
