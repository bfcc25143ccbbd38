#include "pipeline/nccl_stage_transport.hpp"

#include <cstring>

namespace troupe::cluster {
namespace {

constexpr uint32_t kFrameMagic = 0x4c43434e;  // "NCCL"
constexpr uint32_t kStepFrame = 1;
constexpr uint32_t kLogitsFrame = 2;

struct FrameHeader {
  uint32_t magic = kFrameMagic;
  uint32_t kind = 0;
  uint64_t step_id = 0;
  uint64_t meta_bytes = 0;
  int32_t dtype = 0;
  int32_t reserved = 0;
  int64_t rows = 0;  // the tensor [rows, cols]
  int64_t cols = 0;
};
static_assert(sizeof(FrameHeader) == 48);

// The longest metadata a step may carry (positions, sequences, block tables): far above any real
// step's, low enough that a corrupt header can not make the receiver allocate without bound.
constexpr uint64_t kMaxMetaBytes = uint64_t{1} << 30;

}  // namespace

struct NcclStageTransport::Frame {
  std::vector<uint8_t> meta;
  Tensor tensor;  // device memory of the link (undefined when empty)
  DType dtype = DType::f32;
  int64_t rows = 0, cols = 0;
};

NcclStageTransport::NcclStageTransport(std::shared_ptr<NcclStageLink> link, Role role, std::string peer_name)
    : link_(std::move(link)), role_(role), peer_name_(std::move(peer_name)) {}

Error NcclStageTransport::fail(Error error) {
  link_->abort(error.message);
  return error;
}

Status NcclStageTransport::send_frame(uint32_t kind, uint64_t step_id, const std::vector<uint8_t>& meta,
                                      const Tensor& tensor, Backend& backend, std::chrono::milliseconds timeout) {
  if (role_ != Role::sender) return make_error(ErrorCode::internal, "NCCL stage transport: sending on a receiving end");
  if (tensor.dim() != 2) return make_error(ErrorCode::internal, "NCCL stage transport: a tensor of rank 2 is sent");
  FrameHeader header;
  header.kind = kind;
  header.step_id = step_id;
  header.meta_bytes = meta.size();
  header.dtype = int32_t(tensor.dtype());
  header.rows = tensor.size(0);
  header.cols = tensor.size(1);
  backend.synchronize();  // the tensor is written before the link's stream reads it
  TROUPE_TRY(backend.status());
  TROUPE_TRY(link_->send_bytes(&header, sizeof(header), kReceiverRank, timeout));
  if (!meta.empty()) TROUPE_TRY(link_->send_bytes(meta.data(), meta.size(), kReceiverRank, timeout));
  if (tensor.nbytes() > 0) {
    if (tensor.device() == Device::cuda || backend.device() == Device::cpu) return link_->send(tensor, kReceiverRank, timeout);
    return make_error(ErrorCode::internal, "NCCL stage transport: a host tensor from a GPU backend");
  }
  return Status::success();
}

Result<NcclStageTransport::Frame> NcclStageTransport::receive_frame(uint32_t kind, uint64_t step_id,
                                                                    std::chrono::milliseconds timeout, bool to_host) {
  if (role_ != Role::receiver)
    return make_error(ErrorCode::internal, "NCCL stage transport: receiving on a sending end");
  FrameHeader header;
  TROUPE_TRY(link_->recv_bytes(&header, sizeof(header), kSenderRank, timeout));
  if (header.magic != kFrameMagic || header.kind != kind || header.rows < 0 || header.cols < 0 ||
      header.meta_bytes > kMaxMetaBytes ||
      (header.dtype != int32_t(DType::f32) && header.dtype != int32_t(DType::bf16)))
    return fail(make_error(ErrorCode::corrupt_data, "NCCL stage transport: malformed frame header from " + peer_name_));
  if (header.step_id != step_id)
    return fail(make_error(ErrorCode::internal, "NCCL stage transport: step " + std::to_string(header.step_id) +
                                                    " arrived while waiting for step " + std::to_string(step_id)));
  Frame frame;
  frame.dtype = DType(header.dtype);
  frame.rows = header.rows;
  frame.cols = header.cols;
  frame.meta.resize(header.meta_bytes);
  if (!frame.meta.empty()) TROUPE_TRY(link_->recv_bytes(frame.meta.data(), frame.meta.size(), kSenderRank, timeout));
  if (to_host) {
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(uint64_t(header.rows), uint64_t(header.cols), &bytes) ||
        __builtin_mul_overflow(bytes, uint64_t(dtype_size(frame.dtype)), &bytes) || bytes > (uint64_t{1} << 40))
      return fail(make_error(ErrorCode::corrupt_data, "NCCL stage transport: a tensor too large from " + peer_name_));
    frame.tensor = Tensor::empty(frame.dtype, {header.rows, header.cols});
    if (bytes > 0) TROUPE_TRY(link_->recv_bytes(frame.tensor.raw(), bytes, kSenderRank, timeout));
  } else if (header.rows > 0 && header.cols > 0) {
    auto tensor = link_->recv_tensor(frame.dtype, {header.rows, header.cols}, kSenderRank, timeout);
    if (!tensor.ok()) return tensor.error();
    frame.tensor = std::move(tensor.value());
  }
  return frame;
}

Status NcclStageTransport::send_step(uint64_t step_id, const ForwardBatch& batch, LogitsMode mode,
                                     const Tensor& hidden, Backend& backend, std::chrono::milliseconds timeout) {
  return send_frame(kStepFrame, step_id, encode_step_metadata(step_id, batch, mode, hidden), hidden, backend, timeout);
}

Result<DecodedStep> NcclStageTransport::receive_step(uint64_t step_id, std::chrono::milliseconds timeout,
                                                     const std::atomic<bool>& stop) {
  (void)stop;  // abort() wakes a receive; StageRunner::stop and PipelineModel::abort call it
  auto frame = receive_frame(kStepFrame, step_id, timeout, false);
  if (!frame.ok()) return frame.error();
  HiddenShape shape;
  auto step = decode_step_metadata(frame->meta, &shape);
  if (!step.ok()) return fail(step.error());
  if (step->step_id != step_id || shape.dtype != frame->dtype || shape.num_tokens != frame->rows ||
      shape.hidden_size != frame->cols)
    return fail(make_error(ErrorCode::corrupt_data, "NCCL stage transport: step " + std::to_string(step_id) +
                                                        "'s metadata does not match its hidden states"));
  if (frame->tensor.defined()) {
    step->batch.hidden_states = std::move(frame->tensor);
  } else {
    step->batch.hidden_states = Tensor::empty(shape.dtype, {shape.num_tokens, shape.hidden_size});  // no bytes
  }
  return step;
}

Status NcclStageTransport::send_logits(uint64_t step_id, const Tensor& logits, Backend& backend,
                                       std::chrono::milliseconds timeout) {
  if (logits.dtype() != DType::f32) return make_error(ErrorCode::internal, "NCCL stage transport: logits are f32");
  return send_frame(kLogitsFrame, step_id, {}, logits, backend, timeout);
}

Result<Tensor> NcclStageTransport::receive_logits(uint64_t step_id, std::chrono::milliseconds timeout,
                                                  const std::atomic<bool>& stop) {
  (void)stop;
  auto frame = receive_frame(kLogitsFrame, step_id, timeout, true);  // the engine samples on the host
  if (!frame.ok()) return frame.error();
  if (frame->dtype != DType::f32) return fail(make_error(ErrorCode::corrupt_data, "NCCL stage transport: logits that are not f32"));
  return std::move(frame->tensor);
}

}  // namespace troupe::cluster
