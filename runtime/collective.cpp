#include "runtime/collective.hpp"

#include <algorithm>
#include <cstring>

namespace troupe {

Status check_all_gather_shapes(const Tensor& local, const Tensor& out, int64_t size) {
  if (local.dtype() != DType::f32 || out.dtype() != DType::f32 || local.dim() != 2 || out.dim() != 2)
    return make_error(ErrorCode::invalid_argument, "all_gather takes 2-D f32 tensors");
  if (out.size(0) != local.size(0) || out.size(1) > size * local.size(1))
    return make_error(ErrorCode::invalid_argument,
                      "all_gather: out [" + std::to_string(out.size(0)) + ", " + std::to_string(out.size(1)) +
                          "] does not hold " + std::to_string(size) + " blocks of [" + std::to_string(local.size(0)) +
                          ", " + std::to_string(local.size(1)) + "]");
  return Status::success();
}

Status check_all_to_all_shapes(const Tensor& send, const std::vector<int64_t>& send_rows, const Tensor& recv,
                               const std::vector<int64_t>& recv_rows, int64_t size) {
  if (send.dim() != 2 || recv.dim() != 2 || send.dtype() != recv.dtype() || send.size(1) != recv.size(1))
    return make_error(ErrorCode::invalid_argument, "all_to_all takes 2-D tensors of one dtype and width");
  auto check = [&](const std::vector<int64_t>& counts, int64_t rows, const char* what) -> Status {
    if (int64_t(counts.size()) != size)
      return make_error(ErrorCode::invalid_argument, std::string("all_to_all: ") + what + " has " +
                                                         std::to_string(counts.size()) + " counts for " +
                                                         std::to_string(size) + " ranks");
    int64_t sum = 0;
    for (int64_t c : counts) {
      if (c < 0) return make_error(ErrorCode::invalid_argument, std::string("all_to_all: a negative ") + what);
      sum += c;
    }
    if (sum != rows)
      return make_error(ErrorCode::invalid_argument, std::string("all_to_all: ") + what + " sum to " +
                                                         std::to_string(sum) + ", the tensor has " +
                                                         std::to_string(rows) + " rows");
    return Status::success();
  };
  TROUPE_TRY(check(send_rows, send.size(0), "send_rows"));
  return check(recv_rows, recv.size(0), "recv_rows");
}

void place_gathered_columns(const float* const* blocks, int64_t size, int64_t rows, int64_t cols, float* out,
                            int64_t width) {
  for (int64_t r = 0; r < size; ++r) {
    const int64_t first = r * cols, count = std::min(cols, width - first);
    if (count <= 0) continue;  // a rank holding only padding
    for (int64_t i = 0; i < rows; ++i)
      std::memcpy(out + i * width + first, blocks[r] + i * cols, size_t(count) * sizeof(float));
  }
}

}  // namespace troupe
