#include "runtime/attention_metadata.hpp"

#include <algorithm>
#include <string>

namespace troupe {

namespace {
Error bad_batch(const std::string& what) { return make_error(ErrorCode::invalid_argument, "forward batch: " + what); }
}  // namespace

Result<AttentionMetadata> build_attention_metadata(const ForwardBatch& batch, int64_t block_size,
                                                   int64_t num_blocks) {
  const int64_t num_tokens = batch.num_tokens();
  const int64_t num_seqs = batch.num_seqs();
  if (num_tokens == 0 || num_seqs == 0) return bad_batch("empty batch");
  if (!batch.token_ids.empty() && int64_t(batch.token_ids.size()) != num_tokens) {
    return bad_batch(std::to_string(batch.token_ids.size()) + " token ids but " + std::to_string(num_tokens) +
                     " positions");
  }
  AttentionMetadata meta;
  meta.num_tokens = num_tokens;
  meta.num_seqs = num_seqs;
  meta.block_size = block_size;
  for (const auto& seq : batch.seqs) {
    int64_t blocks = (int64_t(seq.context_len) + block_size - 1) / block_size;
    meta.max_blocks_per_seq = std::max(meta.max_blocks_per_seq, blocks);
    meta.max_context_len = std::max<int64_t>(meta.max_context_len, seq.context_len);
  }
  meta.max_blocks_per_seq = std::max<int64_t>(1, meta.max_blocks_per_seq);
  if (batch.block_table_width > 0) {
    if (meta.max_blocks_per_seq > batch.block_table_width)
      return bad_batch("a context needs " + std::to_string(meta.max_blocks_per_seq) + " blocks, the block tables hold " +
                       std::to_string(batch.block_table_width));
    meta.max_blocks_per_seq = batch.block_table_width;
  }
  std::vector<int32_t> slots(static_cast<size_t>(num_tokens));
  std::vector<int32_t> query_start(static_cast<size_t>(num_seqs + 1));
  std::vector<int32_t> context_lens(static_cast<size_t>(num_seqs));
  std::vector<int32_t> tables(size_t(num_seqs * meta.max_blocks_per_seq), -1);
  int64_t token = 0;
  for (int64_t s = 0; s < num_seqs; ++s) {
    const SequenceSlice& seq = batch.seqs[size_t(s)];
    const std::string name = "sequence " + std::to_string(s);
    if (seq.num_new_tokens <= 0) return bad_batch(name + ": num_new_tokens must be positive");
    if (seq.context_len < seq.num_new_tokens) return bad_batch(name + ": context_len < num_new_tokens");
    if (seq.block_table == nullptr) return bad_batch(name + ": no block table");
    int64_t blocks_needed = (int64_t(seq.context_len) + block_size - 1) / block_size;
    if (int64_t(seq.block_table->size()) < blocks_needed) {
      return bad_batch(name + ": block table has " + std::to_string(seq.block_table->size()) + " blocks, " +
                       std::to_string(blocks_needed) + " needed for " + std::to_string(seq.context_len) + " tokens");
    }
    for (int64_t b = 0; b < blocks_needed; ++b) {
      int32_t id = (*seq.block_table)[size_t(b)];
      if (id < 0 || id >= num_blocks) {
        return bad_batch(name + ": block id " + std::to_string(id) + " outside [0, " + std::to_string(num_blocks) + ")");
      }
      tables[size_t(s * meta.max_blocks_per_seq + b)] = id;
    }
    query_start[size_t(s)] = int32_t(token);
    context_lens[size_t(s)] = seq.context_len;
    if (token + seq.num_new_tokens > num_tokens) return bad_batch("sequences hold more tokens than the batch");
    const int64_t first_pos = seq.context_len - seq.num_new_tokens;
    for (int64_t i = 0; i < seq.num_new_tokens; ++i, ++token) {
      int32_t pos = batch.positions[size_t(token)];
      if (pos != first_pos + i) {
        return bad_batch(name + ": token " + std::to_string(i) + " has position " + std::to_string(pos) +
                         ", expected " + std::to_string(first_pos + i));
      }
      slots[size_t(token)] = (*seq.block_table)[size_t(pos / block_size)] * int32_t(block_size) + pos % int32_t(block_size);
    }
    if (seq.num_prompt_logits < 0 || seq.num_prompt_logits > seq.num_new_tokens)
      return bad_batch(name + ": num_prompt_logits outside [0, num_new_tokens]");
    if (seq.needs_logits) meta.logits_rows.push_back(int32_t(token - 1));
  }
  for (int64_t s = 0, begin = 0; s < num_seqs; ++s) {
    const SequenceSlice& seq = batch.seqs[size_t(s)];
    for (int32_t i = 0; i < seq.num_prompt_logits; ++i) meta.logits_rows.push_back(int32_t(begin + i));
    begin += seq.num_new_tokens;
  }
  if (token != num_tokens) return bad_batch("sequences hold fewer tokens than the batch");
  query_start[size_t(num_seqs)] = int32_t(token);
  meta.positions = Tensor::from_i32(batch.positions, {num_tokens});
  meta.slot_mapping = Tensor::from_i32(slots, {num_tokens});
  meta.query_start = Tensor::from_i32(query_start, {num_seqs + 1});
  meta.context_lens = Tensor::from_i32(context_lens, {num_seqs});
  meta.block_tables = Tensor::from_i32(tables, {num_seqs, meta.max_blocks_per_seq});
  return meta;
}

}  // namespace troupe
