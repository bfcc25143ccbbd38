#pragma once
// A read-only, non-owning view of one tensor in a memory-mapped checkpoint.
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/dtype.hpp"

namespace troupe {

struct TensorView {
  std::string name;            // e.g. "model.layers.0.self_attn.q_proj.weight"
  std::string file;            // the .safetensors file it lives in (for error messages)
  DType dtype = DType::f32;
  std::vector<int64_t> shape;  // row-major
  const void* data = nullptr;  // points into the mapping; valid while the WeightStore lives
  size_t nbytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
};

std::string shape_to_string(const std::vector<int64_t>& shape);  // "[4096, 128]"

}  // namespace troupe
