#include "runtime/fp8_scales.hpp"

#include <cmath>
#include <cstring>
#include <vector>

#include "runtime/dtype.hpp"
#include "runtime/fp8_block.hpp"

namespace troupe {

std::string fp8_weight_scale_name(const std::string& weight_name) { return weight_name + "_scale"; }

namespace {

Error bad_scale(const TensorView& weight, const TensorView& scale, const std::string& expected) {
  return make_error(ErrorCode::corrupt_data, "tensor '" + scale.name + "' in " + scale.file + " is " +
                                                 std::string(dtype_name(scale.dtype)) + " " +
                                                 shape_to_string(scale.shape) + ", expected " + expected + " for '" +
                                                 weight.name + "' " + shape_to_string(weight.shape));
}

}  // namespace

Result<Tensor> fp8_scaled_weight(const TensorView& weight, const TensorView& scale, const std::string& weight_scale,
                                 bool keep_fp8) {
  if (weight.dtype != DType::f8_e4m3 || weight.shape.size() != 2)
    return make_error(ErrorCode::corrupt_data, "tensor '" + weight.name + "' in " + weight.file +
                                                   " must be a 2-D F8_E4M3 weight to carry a weight scale, got " +
                                                   std::string(dtype_name(weight.dtype)) + " " +
                                                   shape_to_string(weight.shape));
  const bool per_tensor = weight_scale == "tensor";
  if (!per_tensor && weight_scale != "channel")
    return make_error(ErrorCode::invalid_argument, "'" + weight.name + "': weight scale layout '" + weight_scale +
                                                       "' is not per tensor or per channel");
  const int64_t rows = weight.shape[0], cols = weight.shape[1];
  const bool float_type = scale.dtype == DType::f32 || scale.dtype == DType::bf16 || scale.dtype == DType::f16;
  const bool shape_ok = per_tensor ? scale.numel() == 1 && scale.shape.size() <= 1
                                   : (scale.shape == std::vector<int64_t>{rows} ||
                                      scale.shape == std::vector<int64_t>{rows, 1});
  if (!float_type || !shape_ok)
    return bad_scale(weight, scale, per_tensor ? "one F32 value ([] or [1])" : "F32 [" + std::to_string(rows) + "] or [" +
                                                                                   std::to_string(rows) + ", 1]");
  std::vector<float> scales(size_t(scale.numel()));
  if (!convert_to_f32(scale.dtype, scale.data, scales.size(), scales.data()))
    return bad_scale(weight, scale, "a float tensor");
  for (float s : scales)
    if (!std::isfinite(s)) return bad_scale(weight, scale, "finite scales");

  Tensor fp8 = Tensor::empty(DType::f8_e4m3, weight.shape);
  std::memcpy(fp8.raw(), weight.data, weight.nbytes);
  if (per_tensor) {
    // The block form: every 128x128 block carries the one scale.
    const std::vector<int64_t> block_shape = fp8_scale_shape(weight.shape, kFp8BlockSize, kFp8BlockSize);
    Tensor blocks = Tensor::empty(DType::f32, block_shape);
    for (int64_t i = 0; i < blocks.numel(); ++i) blocks.data<float>()[i] = scales[0];
    fp8.set_block_scale(std::move(blocks));
    if (keep_fp8) return fp8;
    return dequantize_fp8_block(fp8, weight.name);
  }
  Tensor out = Tensor::empty(DType::f32, {rows, cols});
  const auto* in = static_cast<const uint8_t*>(weight.data);
  float* dst = out.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) dst[r * cols + c] = f8_e4m3_to_f32(in[r * cols + c]) * scales[size_t(r)];
  return out;
}

}  // namespace troupe
