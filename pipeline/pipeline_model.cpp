#include "pipeline/pipeline_model.hpp"

#include <algorithm>
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
    : PipelineModel(std::move(first), backend, std::make_unique<HostStageTransport>(std::move(to_next)),
                    std::make_unique<HostStageTransport>(std::move(from_last)), options) {}

PipelineModel::PipelineModel(std::unique_ptr<Model> first, Backend& backend, std::unique_ptr<StageTransport> to_next,
                             std::unique_ptr<StageTransport> from_last, PipelineModelOptions options)
    : first_(std::move(first)),
      backend_(backend),
      to_next_(std::move(to_next)),
      from_last_(std::move(from_last)),
      options_(options) {
  options_.max_steps_in_flight = std::max<int64_t>(1, options_.max_steps_in_flight);
  receiver_ = std::thread([this] { receive_loop(); });
}

PipelineModel::~PipelineModel() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  aborted_.store(true);  // a receive in progress gives up within a poll
  from_last_->abort("the pipeline is stopping");  // one inside NCCL at once
  changed_.notify_all();
  if (receiver_.joinable()) receiver_.join();
}

void PipelineModel::abort(const std::string& why) {
  if (aborted_.load()) return;
  abort_reason_ = why;
  aborted_.store(true);
  to_next_->abort(why);
  from_last_->abort(why);
}

Error PipelineModel::fail(const std::string& why) {
  if (!broken_.exchange(true)) log::get("cluster")->error("pipeline broken: {}", why);
  return make_error(ErrorCode::unavailable, "pipeline broken: " + why);
}

void PipelineModel::receive_loop() {
  for (;;) {
    uint64_t step_id = 0;
    {
      std::unique_lock lock(mutex_);
      changed_.wait(lock, [&] { return stopping_ || !to_receive_.empty(); });
      if (stopping_) return;
      step_id = to_receive_.front();
      to_receive_.pop_front();
    }
    Result<Tensor> logits = from_last_->receive_logits(step_id, options_.step_timeout, aborted_);
    // The steps after a lost one can not come either: theirs fail at once.
    if (!logits.ok()) aborted_.store(true);
    std::lock_guard lock(mutex_);
    received_.emplace(step_id, std::move(logits));
    changed_.notify_all();
  }
}

Result<Tensor> PipelineModel::forward(const ForwardBatch& batch, KvCache& cache, LogitsMode mode) {
  auto ticket = start_step(batch, cache, mode);
  if (!ticket.ok()) return ticket.error();
  return finish_step(ticket.value());
}

Result<uint64_t> PipelineModel::start_step(const ForwardBatch& batch, KvCache& cache, LogitsMode mode) {
  if (broken_.load()) return make_error(ErrorCode::unavailable, "pipeline broken by an earlier step");
  if (aborted_.load()) return fail("aborted: " + abort_reason_);
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
  {
    // Queued before the first part is sent: the receiver waits for its logits from then on.
    std::lock_guard lock(mutex_);
    for (size_t part = 0; part < num_parts; ++part) to_receive_.push_back(first_step + part);
  }
  changed_.notify_all();

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
    sent = to_next_->send_step(first_step + part, piece, mode, hidden.value(), backend_, options_.step_timeout);
  }
  if (!sent.ok()) {
    aborted_.store(true);  // no one may wait for logits that never come
    from_last_->abort("the pipeline broke sending a step");  // a receive inside NCCL does not poll aborted_
    return fail("sending to " + to_next_->peer() + ": " + sent.error().message);
  }
  started_[first_step] = Started{first_step, num_parts};
  return first_step;
}

Result<Tensor> PipelineModel::finish_step(uint64_t ticket) {
  auto it = started_.find(ticket);
  if (it == started_.end())
    return make_error(ErrorCode::internal, "pipeline: no step in flight under ticket " + std::to_string(ticket));
  const Started step = it->second;
  started_.erase(it);
  std::vector<Result<Tensor>> received;
  {
    std::unique_lock lock(mutex_);
    for (size_t part = 0; part < step.num_parts; ++part) {
      const uint64_t id = step.first_id + part;
      changed_.wait(lock, [&] { return received_.count(id) > 0; });
      auto got = received_.find(id);
      received.push_back(std::move(got->second));
      received_.erase(got);
    }
  }
  int64_t rows = 0, vocab = 0;
  for (auto& part : received) {
    if (!part.ok()) return fail("receiving logits from " + from_last_->peer() + ": " + part.error().message);
    rows += part->size(0);
    vocab = part->size(1);
  }
  if (received.size() == 1) return std::move(received[0].value());
  Tensor logits = Tensor::empty(DType::f32, {rows, vocab});
  size_t offset = 0;
  for (auto& part : received) {
    std::memcpy(static_cast<char*>(logits.raw()) + offset, part->raw(), part->nbytes());
    offset += part->nbytes();
  }
  return logits;
}

}  // namespace troupe::cluster
