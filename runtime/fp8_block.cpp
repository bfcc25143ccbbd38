#include "runtime/fp8_block.hpp"

#include <cstring>

#include "runtime/dtype.hpp"

namespace troupe {

std::string fp8_scale_name(const std::string& weight_name) { return weight_name + "_scale_inv"; }

std::vector<int64_t> fp8_scale_shape(const std::vector<int64_t>& weight_shape, int64_t block_n, int64_t block_k) {
  if (weight_shape.size() != 2 || block_n <= 0 || block_k <= 0) return {};
  return {(weight_shape[0] + block_n - 1) / block_n, (weight_shape[1] + block_k - 1) / block_k};
}

Status check_fp8_block_scale(const TensorView& weight, const TensorView& scale_inv, int64_t block_n, int64_t block_k) {
  if (weight.dtype != DType::f8_e4m3 || weight.shape.size() != 2)
    return make_error(ErrorCode::corrupt_data, "tensor '" + weight.name + "' in " + weight.file +
                                                   " must be a 2-D F8_E4M3 weight to carry block scales, got " +
                                                   std::string(dtype_name(weight.dtype)) + " " +
                                                   shape_to_string(weight.shape));
  const std::vector<int64_t> expected = fp8_scale_shape(weight.shape, block_n, block_k);
  if (scale_inv.dtype != DType::f32 || scale_inv.shape != expected)
    return make_error(ErrorCode::corrupt_data, "tensor '" + scale_inv.name + "' in " + scale_inv.file + " is " +
                                                   std::string(dtype_name(scale_inv.dtype)) + " " +
                                                   shape_to_string(scale_inv.shape) + ", expected F32 " +
                                                   shape_to_string(expected) + " for '" + weight.name + "' " +
                                                   shape_to_string(weight.shape) + " in " +
                                                   std::to_string(block_n) + "x" + std::to_string(block_k) + " blocks");
  return Status::success();
}

Result<Tensor> dequantize_fp8_block(const TensorView& weight, const TensorView& scale_inv, int64_t block_n,
                                    int64_t block_k) {
  TROUPE_TRY(check_fp8_block_scale(weight, scale_inv, block_n, block_k));
  const std::vector<int64_t> expected = fp8_scale_shape(weight.shape, block_n, block_k);
  const int64_t rows = weight.shape[0], cols = weight.shape[1], scale_cols = expected[1];
  std::vector<float> scales(size_t(scale_inv.numel()));
  std::memcpy(scales.data(), scale_inv.data, scales.size() * sizeof(float));  // the mapping may be unaligned
  Tensor out = Tensor::empty(DType::f32, {rows, cols});
  const auto* in = static_cast<const uint8_t*>(weight.data);
  float* dst = out.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* scale_row = scales.data() + (r / block_n) * scale_cols;
    for (int64_t c = 0; c < cols; ++c)
      dst[r * cols + c] = f8_e4m3_to_f32(in[r * cols + c]) * scale_row[c / block_k];
  }
  return out;
}

Result<Tensor> dequantize_fp8_block(const Tensor& weight, const std::string& name) {
  if (!weight.has_block_scale() || weight.device() != Device::cpu || weight.block_scale().device() != Device::cpu)
    return make_error(ErrorCode::invalid_argument, name + ": not a host FP8 weight with its block scale");
  auto view_of = [](const Tensor& t, const std::string& n) {
    TensorView v;
    v.name = n;
    v.file = "memory";
    v.dtype = t.dtype();
    v.shape = t.shape();
    v.data = t.raw();
    v.nbytes = t.nbytes();
    return v;
  };
  return dequantize_fp8_block(view_of(weight, name), view_of(weight.block_scale(), fp8_scale_name(name)),
                              kFp8BlockSize, kFp8BlockSize);
}

}  // namespace troupe
