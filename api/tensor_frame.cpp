#include "api/tensor_frame.hpp"

#include <cstring>
#include <string>

namespace troupe::api::detail {
namespace {

constexpr uint32_t kMagic = 0x46505254;  // "TRPF"
constexpr uint32_t kKindTensor = 0;
constexpr uint32_t kKindError = 1;
constexpr uint32_t kMaxDims = 64;

struct FrameHeader {
  uint32_t magic = kMagic;
  uint32_t kind = kKindTensor;
  uint32_t code = 0;
  uint32_t ndim = 0;
};
static_assert(sizeof(FrameHeader) == 16);

Error corrupt(const std::string& what) { return make_error(ErrorCode::corrupt_data, "tensor frame: " + what); }

}  // namespace

std::vector<uint8_t> encode_tensor(const Tensor& tensor) {
  FrameHeader header;
  header.ndim = static_cast<uint32_t>(tensor.shape.size());
  const size_t dims_bytes = tensor.shape.size() * sizeof(int64_t);
  const size_t data_bytes = tensor.data.size() * sizeof(float);
  std::vector<uint8_t> bytes(sizeof(header) + dims_bytes + data_bytes);
  std::memcpy(bytes.data(), &header, sizeof(header));
  if (dims_bytes > 0) std::memcpy(bytes.data() + sizeof(header), tensor.shape.data(), dims_bytes);
  if (data_bytes > 0) std::memcpy(bytes.data() + sizeof(header) + dims_bytes, tensor.data.data(), data_bytes);
  return bytes;
}

std::vector<uint8_t> encode_error(const Error& error) {
  FrameHeader header;
  header.kind = kKindError;
  header.code = static_cast<uint32_t>(error.code);
  std::vector<uint8_t> bytes(sizeof(header) + error.message.size());
  std::memcpy(bytes.data(), &header, sizeof(header));
  if (!error.message.empty()) std::memcpy(bytes.data() + sizeof(header), error.message.data(), error.message.size());
  return bytes;
}

Result<Tensor> decode_frame(const uint8_t* bytes, uint64_t num_bytes) {
  FrameHeader header;
  if (num_bytes < sizeof(header)) return corrupt(std::to_string(num_bytes) + " bytes, shorter than its header");
  std::memcpy(&header, bytes, sizeof(header));
  if (header.magic != kMagic) return corrupt("bad magic (not a troupe tensor frame)");
  const uint8_t* body = bytes + sizeof(header);
  const uint64_t body_bytes = num_bytes - sizeof(header);
  if (header.kind == kKindError) {
    if (header.code > static_cast<uint32_t>(ErrorCode::internal)) return corrupt("unknown error code");
    return make_error(static_cast<ErrorCode>(header.code), std::string(reinterpret_cast<const char*>(body), body_bytes));
  }
  if (header.kind != kKindTensor) return corrupt("unknown kind " + std::to_string(header.kind));
  if (header.ndim > kMaxDims) return corrupt(std::to_string(header.ndim) + " dims (at most 64)");
  const uint64_t dims_bytes = uint64_t{header.ndim} * sizeof(int64_t);
  if (body_bytes < dims_bytes) return corrupt("truncated shape");
  Tensor tensor;
  tensor.shape.resize(header.ndim);
  if (dims_bytes > 0) std::memcpy(tensor.shape.data(), body, dims_bytes);
  // NOTE: the dims come off the wire: multiply with overflow checks (Tensor::numel() does not).
  uint64_t numel = 1;
  for (int64_t dim : tensor.shape) {
    if (dim < 0) return corrupt("negative dim");
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(dim), &numel)) return corrupt("shape too large");
  }
  const uint64_t data_bytes = body_bytes - dims_bytes;
  uint64_t expected_bytes = 0;
  if (__builtin_mul_overflow(numel, uint64_t{sizeof(float)}, &expected_bytes) || data_bytes != expected_bytes)
    return corrupt(std::to_string(data_bytes) + " data bytes for " + std::to_string(numel) + " floats");
  tensor.data.resize(static_cast<size_t>(numel));
  if (data_bytes > 0) std::memcpy(tensor.data.data(), body + dims_bytes, data_bytes);
  return tensor;
}

}  // namespace troupe::api::detail
