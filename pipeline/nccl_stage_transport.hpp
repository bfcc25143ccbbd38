#pragma once
// StageTransport over an NCCL stage link (runtime/nccl_stage_link.hpp): one end of a 2-rank
// communicator between two stages' GPUs, the sender rank 0 and the receiver rank 1. Each message
// is up to three NCCL transfers, on the link's own stream:
//
//   sender (rank 0)                                    receiver (rank 1)
//   FrameHeader{magic, kind, step, meta bytes, dtype, rows, cols} (48 bytes, staged) -> recv_bytes
//   metadata: encode_step_metadata (staged; steps only)    -> recv_bytes, decode_step_metadata
//   tensor: hidden states [tokens, hidden] or logits        -> recv_tensor (device memory)
//           [rows, vocab], straight from device memory
//
// Before the tensor leaves, the sender synchronizes its backend (the link's stream must not
// read what the stage's stream is still writing), as the host transport's copy to host did; a
// received tensor is complete when the call returns. Received hidden states stay in the link's
// buffer (valid until the next receive, so the stage must be done with them by then: it
// synchronizes before it sends on); logits are copied to the host, as the engine samples them
// there in a pipeline. Any failure (an NCCL error, a timeout, abort(), the wrong frame) aborts
// the communicator (ncclCommAbort) and breaks the pipeline.
#include <memory>
#include <string>

#include "pipeline/stage_transport.hpp"
#include "runtime/nccl_stage_link.hpp"

namespace troupe::cluster {

class NcclStageTransport final : public StageTransport {
 public:
  enum class Role { sender, receiver };
  // `link` is connected (or connecting: calls fail until it is ready); `peer_name` for messages.
  NcclStageTransport(std::shared_ptr<NcclStageLink> link, Role role, std::string peer_name);

  Status send_step(uint64_t step_id, const ForwardBatch& batch, LogitsMode mode, const Tensor& hidden,
                   Backend& backend, std::chrono::milliseconds timeout) override;
  Result<DecodedStep> receive_step(uint64_t step_id, std::chrono::milliseconds timeout,
                                   const std::atomic<bool>& stop) override;
  Status send_logits(uint64_t step_id, const Tensor& logits, Backend& backend,
                     std::chrono::milliseconds timeout) override;
  Result<Tensor> receive_logits(uint64_t step_id, std::chrono::milliseconds timeout,
                                const std::atomic<bool>& stop) override;
  void abort(const std::string& why) override { link_->abort(why); }
  const std::string& peer() const override { return peer_name_; }

  static constexpr int kSenderRank = 0;
  static constexpr int kReceiverRank = 1;

 private:
  struct Frame;
  Status send_frame(uint32_t kind, uint64_t step_id, const std::vector<uint8_t>& meta, const Tensor& tensor,
                    Backend& backend, std::chrono::milliseconds timeout);
  // `to_host`: the tensor staged into host memory (logits), else left in the link's buffer.
  Result<Frame> receive_frame(uint32_t kind, uint64_t step_id, std::chrono::milliseconds timeout, bool to_host);
  Error fail(Error error);  // aborts the link (a frame out of step leaves the peer mid-message)

  std::shared_ptr<NcclStageLink> link_;
  Role role_;
  std::string peer_name_;
};

}  // namespace troupe::cluster
