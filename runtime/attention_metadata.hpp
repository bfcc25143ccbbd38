#pragma once
// Per-step attention bookkeeping derived once from a ForwardBatch and shared by every layer:
// where each new token's K/V goes in the paged cache, and each sequence's query span and blocks.
#include <cstdint>
#include <vector>

#include "runtime/forward_batch.hpp"
#include "runtime/result.hpp"
#include "runtime/tensor.hpp"

namespace troupe {

struct AttentionMetadata {
  int64_t num_tokens = 0;
  int64_t num_seqs = 0;
  int64_t block_size = 0;
  int64_t max_blocks_per_seq = 0;
  int64_t max_context_len = 0;
  Tensor positions;     // [num_tokens] i32
  Tensor slot_mapping;  // [num_tokens] i32: block_id * block_size + position % block_size
  Tensor query_start;   // [num_seqs + 1] i32: sequence s owns tokens [query_start[s], query_start[s+1])
  Tensor context_lens;  // [num_seqs] i32
  Tensor block_tables;  // [num_seqs, max_blocks_per_seq] i32, padded with -1
  // Token indices whose logits are wanted: first each needs_logits sequence's last token (the
  // sampler's rows, in batch order), then each sequence's first num_prompt_logits tokens.
  std::vector<int32_t> logits_rows;
};

// Validates the batch (token counts add up, positions match context lengths, block tables cover
// the context and hold ids in [0, num_blocks)) and builds the host metadata.
Result<AttentionMetadata> build_attention_metadata(const ForwardBatch& batch, int64_t block_size,
                                                   int64_t num_blocks);

}  // namespace troupe
