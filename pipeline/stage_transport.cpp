#include "pipeline/stage_transport.hpp"

#include "pipeline/pipeline_model.hpp"

namespace troupe::cluster {

Status HostStageTransport::send_step(uint64_t step_id, const ForwardBatch& batch, LogitsMode mode,
                                     const Tensor& hidden, Backend& backend, std::chrono::milliseconds timeout) {
  const Tensor host = backend.to_host(hidden);
  const std::vector<uint8_t> bytes = encode_step(step_id, batch, mode, host);
  return channel_.send(step_id, bytes.data(), bytes.size(), timeout);
}

Result<DecodedStep> HostStageTransport::receive_step(uint64_t step_id, std::chrono::milliseconds timeout,
                                                     const std::atomic<bool>& stop) {
  auto bytes = receive_message(channel_, step_id, timeout, stop);
  if (!bytes.ok()) return bytes.error();
  auto step = decode_step(bytes.value());
  if (!step.ok()) return step.error();
  if (step->step_id != step_id)
    return make_error(ErrorCode::internal, "step " + std::to_string(step->step_id) + " arrived under tag " +
                                               std::to_string(step_id));
  return step;
}

Status HostStageTransport::send_logits(uint64_t step_id, const Tensor& logits, Backend& backend,
                                       std::chrono::milliseconds timeout) {
  const Tensor host = backend.to_host(logits);
  const std::vector<uint8_t> bytes = encode_logits(step_id, host);
  return channel_.send(step_id, bytes.data(), bytes.size(), timeout);
}

Result<Tensor> HostStageTransport::receive_logits(uint64_t step_id, std::chrono::milliseconds timeout,
                                                  const std::atomic<bool>& stop) {
  auto bytes = receive_message(channel_, step_id, timeout, stop);
  if (!bytes.ok()) return bytes.error();
  return decode_logits(bytes.value(), step_id);
}

}  // namespace troupe::cluster
