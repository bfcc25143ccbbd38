#pragma once
// The bytes of one pipeline step on the tensor channel. Stage k sends stage k+1 one message per
// micro-batch: the step's metadata (positions, sequences, block tables, logits mode) followed by
// the hidden states; the last stage sends the first one the logits back. Block tables travel with
// every step because each stage keeps its own paged cache with the same block ids (the first
// stage's block manager decides them).
//
// Layout (host byte order: every stage runs the same build):
//   StepHeader | positions i32[num_tokens] | per seq {num_new, context_len,
//   needs_logits | num_prompt_logits << 1, table_len} i32[4] | block ids i32[sum table_len] | hidden bytes [num_tokens, hidden] dtype
//   LogitsHeader | logits f32[rows, vocab]
// The NCCL transport (nccl_stage_transport.hpp) sends the same bytes without the hidden states
// (encode_step_metadata), then the hidden states from device memory.
#include <cstdint>
#include <vector>

#include "runtime/forward_batch.hpp"
#include "runtime/model.hpp"
#include "runtime/result.hpp"
#include "runtime/tensor.hpp"

namespace troupe::cluster {

// A step as a later stage sees it: the batch (block_table pointers into `tables`) and its mode.
struct DecodedStep {
  uint64_t step_id = 0;
  LogitsMode mode = LogitsMode::last_token;
  ForwardBatch batch;  // hidden_states: a host tensor over the message's bytes (copied)
  std::vector<std::vector<int32_t>> tables;

  DecodedStep() = default;
  DecodedStep(const DecodedStep&) = delete;  // batch.seqs point into tables
  DecodedStep& operator=(const DecodedStep&) = delete;
  DecodedStep(DecodedStep&&) = default;  // moving the outer vector keeps the inner buffers
  DecodedStep& operator=(DecodedStep&&) = default;
};

// `hidden` is a host tensor [num_tokens, hidden] (f32 or bf16).
std::vector<uint8_t> encode_step(uint64_t step_id, const ForwardBatch& batch, LogitsMode mode, const Tensor& hidden);
// corrupt_data when the bytes are short, the magic is wrong or the counts do not add up.
Result<DecodedStep> decode_step(const std::vector<uint8_t>& bytes);

// The same bytes without the hidden states, for a transport that moves them itself (NCCL, from
// device memory): `hidden` only gives their dtype and shape (it may live on a GPU).
std::vector<uint8_t> encode_step_metadata(uint64_t step_id, const ForwardBatch& batch, LogitsMode mode,
                                          const Tensor& hidden, size_t reserve_extra = 0);
struct HiddenShape {
  DType dtype = DType::f32;
  int64_t num_tokens = 0;
  int64_t hidden_size = 0;
};
// decode_step of such bytes: batch.hidden_states stays undefined; *hidden says what is to come.
Result<DecodedStep> decode_step_metadata(const std::vector<uint8_t>& bytes, HiddenShape* hidden);

// `logits` is a host f32 tensor [rows, vocab].
std::vector<uint8_t> encode_logits(uint64_t step_id, const Tensor& logits);
// Checks the step id too: logits of another step are an internal error.
Result<Tensor> decode_logits(const std::vector<uint8_t>& bytes, uint64_t expected_step_id);

}  // namespace troupe::cluster
