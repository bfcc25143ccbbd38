#pragma once
// The unit that flows between pipeline stages: a dense fp32 tensor in host memory, row-major.
// Stages receive and return these by value; between processes they travel over a UCX tensor
// channel (native byte order: hosts of one pipeline share it), never inside control messages.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "runtime/result.hpp"

namespace troupe::api {

struct Tensor {
  std::vector<int64_t> shape;  // {} is a scalar (one value)
  std::vector<float> data;     // [numel()]

  Tensor() = default;
  Tensor(std::vector<int64_t> shape_in, std::vector<float> data_in)
      : shape(std::move(shape_in)), data(std::move(data_in)) {}

  static Tensor zeros(std::vector<int64_t> shape_in) {
    Tensor tensor;
    tensor.shape = std::move(shape_in);
    int64_t n = tensor.numel();
    tensor.data.assign(static_cast<size_t>(n < 0 ? 0 : n), 0.0f);
    return tensor;
  }

  // Product of the dims (1 for a scalar); -1 when a dim is negative.
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t dim : shape) {
      if (dim < 0) return -1;
      n *= dim;
    }
    return n;
  }

  // Dims are >= 0 and data holds exactly numel() values.
  Status validate() const {
    const int64_t n = numel();
    if (n < 0) return make_error(ErrorCode::invalid_argument, "tensor shape has a negative dim");
    if (static_cast<int64_t>(data.size()) != n)
      return make_error(ErrorCode::invalid_argument, "tensor data holds " + std::to_string(data.size()) +
                                                         " values but its shape needs " + std::to_string(n));
    return Status::success();
  }
};

}  // namespace troupe::api
