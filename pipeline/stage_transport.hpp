#pragma once
// One direction of the hand-off between two pipeline stages: stage k sends stage k+1 each
// micro-batch (the step's metadata and hidden states, step_codec.hpp), and the last stage sends
// the first the logits back. PipelineModel (stage 0) and StageRunner (stages 1..N-1) hold one
// transport per direction and do not know which kind it is:
//
//   HostStageTransport (--stage-transport host, the default): the UCX tensor channel; the hidden
//     states are copied to host memory and travel inside the step's message.
//   NcclStageTransport (--stage-transport nccl, nccl_stage_transport.hpp): NCCL send/recv between
//     the two stages' GPUs; the hidden states never leave device memory.
//
// Steps are numbered 1, 2, ... and received in that order (a message of another step is an
// error). Every call has a timeout; an error breaks the pipeline (the group is restarted).
// Thread-safety: one thread per transport at a time, except abort(), which may come from any
// thread and makes a call in progress (and every later one) fail soon.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "pipeline/step_codec.hpp"
#include "pipeline/tensor_channel.hpp"
#include "runtime/backend.hpp"

namespace troupe::cluster {

class StageTransport {
 public:
  virtual ~StageTransport() = default;

  // `hidden` [num_tokens, hidden] was written by `backend` (on its device, or the host).
  virtual Status send_step(uint64_t step_id, const ForwardBatch& batch, LogitsMode mode, const Tensor& hidden,
                           Backend& backend, std::chrono::milliseconds timeout) = 0;
  // The step's batch with its hidden states: a host tensor, or device memory the transport owns,
  // valid until the next receive_step (the receiver synchronizes its backend before that, as every
  // send does). Gives up when `stop` is set (checked at least every 50 ms) or `timeout` passes.
  virtual Result<DecodedStep> receive_step(uint64_t step_id, std::chrono::milliseconds timeout,
                                           const std::atomic<bool>& stop) = 0;
  // `logits` f32 [rows, vocab], written by `backend`.
  virtual Status send_logits(uint64_t step_id, const Tensor& logits, Backend& backend,
                             std::chrono::milliseconds timeout) = 0;
  // A host f32 tensor [rows, vocab].
  virtual Result<Tensor> receive_logits(uint64_t step_id, std::chrono::milliseconds timeout,
                                        const std::atomic<bool>& stop) = 0;

  // Thread-safe. Calls in progress and later ones fail (the host transport relies on `stop` alone).
  virtual void abort(const std::string& why) { (void)why; }
  // Who is at the other end, for messages ("host:port", "stage 1 over NCCL").
  virtual const std::string& peer() const = 0;
};

// Over the UCX tensor channel, staged through host memory (step_codec's messages).
class HostStageTransport final : public StageTransport {
 public:
  explicit HostStageTransport(TensorChannel channel) : channel_(std::move(channel)) {}

  Status send_step(uint64_t step_id, const ForwardBatch& batch, LogitsMode mode, const Tensor& hidden,
                   Backend& backend, std::chrono::milliseconds timeout) override;
  Result<DecodedStep> receive_step(uint64_t step_id, std::chrono::milliseconds timeout,
                                   const std::atomic<bool>& stop) override;
  Status send_logits(uint64_t step_id, const Tensor& logits, Backend& backend,
                     std::chrono::milliseconds timeout) override;
  Result<Tensor> receive_logits(uint64_t step_id, std::chrono::milliseconds timeout,
                                const std::atomic<bool>& stop) override;
  const std::string& peer() const override { return channel_.peer(); }

 private:
  TensorChannel channel_;
};

}  // namespace troupe::cluster
