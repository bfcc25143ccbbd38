#pragma once
// The bytes of one tensor channel message between stages: a tensor, or an error that replaces
// the tensor (a stage function failed) and is passed on unchanged to the coordinator.
//
//   header  {magic u32, kind u32 (0 tensor, 1 error), code u32 (ErrorCode), ndim u32}  16 bytes
//   tensor: dims int64[ndim], then float32[numel]       error: the message's bytes
// Native byte order: the hosts of one pipeline share it.
#include <cstdint>
#include <vector>

#include "runtime/result.hpp"
#include "troupe/tensor.hpp"

namespace troupe::api::detail {

std::vector<uint8_t> encode_tensor(const Tensor& tensor);
std::vector<uint8_t> encode_error(const Error& error);

// The tensor, the error a frame carries, or corrupt_data when the bytes are not a frame.
Result<Tensor> decode_frame(const uint8_t* bytes, uint64_t num_bytes);

}  // namespace troupe::api::detail
