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
