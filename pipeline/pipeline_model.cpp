#include "pipeline/pipeline_model.hpp"

#include <cstring>
#include <thread>
#include <vector>

#include "pipeline/step_codec.hpp"
#include "runtime/logging.hpp"

namespace troupe::cluster {
namespace {

using Clock = std::chrono::steady_clock;

// Sequences [seq_begin, seq_end) of `batch` as a batch of their own (block tables shared).
ForwardBatch slice_batch(const ForwardBatch& batch, size_t seq_begin, size_t seq_end) {
  size_t token_begin = 0;
  for (size_t s = 0; s < seq_begin; ++s) token_begin += size_t(batch.seqs[s].num_new_tokens);
  size_t token_end = token_begin;
  for (size_t s = seq_begin; s < seq_end; ++s) token_end += size_t(batch.seqs[s].num_new_tokens);
  ForwardBatch part;
  part.token_ids.assign(batch.token_ids.begin() + long(token_begin), batch.token_ids.begin() + long(token_end));
  part.positions.assign(batch.positions.begin() + long(token_begin), batch.positions.begin() + long(token_end));
  part.seqs.assign(batch.seqs.begin() + long(seq_begin), batch.seqs.begin() + long(seq_end));
  return part;
}

}  // namespace

Result<std::vector<uint8_t>> receive_message(TensorChannel& channel, uint64_t tag, std::chrono::milliseconds timeout,
                                             const std::atomic<bool>& stop, std::chrono::milliseconds poll) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (stop.load()) return make_error(ErrorCode::unavailable, "stopped");
    auto size = channel.probe(tag, poll);
    if (size.ok()) {
      std::vector<uint8_t> bytes(size.value());
      auto got = channel.recv(tag, bytes.data(), bytes.size(), timeout);
      if (!got.ok()) return got.error();
      bytes.resize(got.value());
      return bytes;
    }
    if (size.error().code != ErrorCode::timeout) return size.error();
    if (Clock::now() >= deadline)
      return make_error(ErrorCode::timeout, "no message from " + channel.peer() + " within " +
                                                std::to_string(timeout.count()) + " ms");
  }
}

PipelineModel::PipelineModel(std::unique_ptr<Model> first, Backend& backend, TensorChannel to_next,
                             TensorChannel from_last, PipelineModelOptions options)
    : first_(std::move(first)),
      backend_(backend),
      to_next_(std::move(to_next)),
      from_last_(std::move(from_last)),
      options_(options) {}

PipelineModel::~PipelineModel() = default;

void PipelineModel::abort(const std::string& why) {
  if (aborted_.load()) return;
  abort_reason_ = why;
  aborted_.store(true);
}

Error PipelineModel::fail(const std::string& why) {
  if (!broken_.exchange(true)) log::get("cluster")->error("pipeline broken: {}", why);
  return make_error(ErrorCode::unavailable, "pipeline broken: " + why);
}

Result<Tensor> PipelineModel::forward(const ForwardBatch& batch, KvCache& cache, LogitsMode mode) {
  if (aborted_.load()) return fail("aborted: " + abort_reason_);
  if (broken_.load()) return make_error(ErrorCode::unavailable, "pipeline broken by an earlier step");
  const size_t num_seqs = batch.seqs.size();
  if (num_seqs == 0) return make_error(ErrorCode::invalid_argument, "forward batch: no sequences");
  // NOTE: a batch with prompt logits is one part: the parts' logits are concatenated, which would
  // put a part's prompt rows before the next part's sampler rows (see AttentionMetadata).
  bool split = batch.num_tokens() >= options_.min_tokens_to_split;
  for (const SequenceSlice& seq : batch.seqs) split = split && seq.num_prompt_logits == 0;
  const size_t num_parts =
      split ? std::min<size_t>(num_seqs, size_t(std::max<int64_t>(1, options_.max_micro_batches))) : 1;
  const uint64_t first_step = next_step_id_;
  next_step_id_ += num_parts;

  // The parts' logits. With several parts a receiver thread takes them while this thread computes
  // and sends the rest (the last stage blocks sending part 1's logits until someone receives
  // them); a single part is received here once it is sent, with no thread per step.
  std::vector<Result<Tensor>> received(num_parts, make_error(ErrorCode::internal, "not received"));
  auto receive_all = [&] {
    for (size_t part = 0; part < num_parts; ++part) {
      auto bytes = receive_message(from_last_, first_step + part, options_.step_timeout, aborted_);
      if (!bytes.ok()) {
        received[part] = bytes.error();
        return;
      }
      received[part] = decode_logits(bytes.value(), first_step + part);
      if (!received[part].ok()) return;
    }
  };
  std::thread receiver;
  if (num_parts > 1) receiver = std::thread(receive_all);

  Status sent = Status::success();
  for (size_t part = 0; part < num_parts && sent.ok(); ++part) {
    ForwardBatch sliced;
    if (num_parts > 1) sliced = slice_batch(batch, num_seqs * part / num_parts, num_seqs * (part + 1) / num_parts);
    const ForwardBatch& piece = num_parts > 1 ? sliced : batch;
    auto hidden = first_->forward(piece, cache, mode);
    if (!hidden.ok()) {
      sent = hidden.error();
      break;
    }
    const Tensor host = backend_.to_host(hidden.value());
    const std::vector<uint8_t> bytes = encode_step(first_step + part, piece, mode, host);
    sent = to_next_.send(first_step + part, bytes.data(), bytes.size(), options_.step_timeout);
  }
  if (!sent.ok()) aborted_.store(true);  // no one may wait for logits that never come
  if (receiver.joinable()) receiver.join();
  else if (sent.ok()) receive_all();
  if (!sent.ok()) return fail("sending to " + to_next_.peer() + ": " + sent.error().message);

  int64_t rows = 0, vocab = 0;
  for (auto& part : received) {
    if (!part.ok()) return fail("receiving logits from " + from_last_.peer() + ": " + part.error().message);
    rows += part->size(0);
    vocab = part->size(1);
  }
  if (num_parts == 1) return std::move(received[0].value());
  Tensor logits = Tensor::empty(DType::f32, {rows, vocab});
  size_t offset = 0;
  for (auto& part : received) {
    std::memcpy(static_cast<char*>(logits.raw()) + offset, part->raw(), part->nbytes());
    offset += part->nbytes();
  }
  return logits;
}

}  // namespace troupe::cluster
