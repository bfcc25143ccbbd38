#pragma once
// Writes `.safetensors` files: test fixtures, and random weights for `--load-format dummy`.
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/dtype.hpp"
#include "runtime/result.hpp"

namespace troupe {

struct NamedTensor {
  std::string name;
  DType dtype = DType::f32;
  std::vector<int64_t> shape;  // row-major
  std::vector<uint8_t> bytes;  // numel * dtype_size(dtype) bytes, little-endian
};

// Writes `tensors` in order (data contiguous, header padded with spaces to a multiple of 8).
// `metadata` goes under "__metadata__" when not empty. Fails (invalid_argument) on duplicate or
// empty names, negative dims, or a byte count not matching dtype x shape; the error names the
// path and the tensor.
Status write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                         const std::vector<std::pair<std::string, std::string>>& metadata = {});

// A NamedTensor from fp32 values converted to `dtype` (f32, f16 or bf16; other dtypes get no
// bytes, which write_safetensors then rejects).
NamedTensor make_named_tensor(std::string name, DType dtype, std::vector<int64_t> shape,
                              const std::vector<float>& values);

}  // namespace troupe
