#pragma once
// FP8 block-quantized weights (DeepSeek-V3/R1, Qwen3-FP8): W [out, in] F8_E4M3 with
// W_scale_inv F32 [ceil(out/block_n), ceil(in/block_k)]; element (r, c) is
// fp8(r, c) * scale_inv[r / block_n, c / block_k] (the name says inverse; it multiplies). Edge
// blocks may be partial. The dequantization here is exact in fp32 (an e4m3 value times an fp32
// scale is one rounding), so the CPU reference matches an fp32 oracle given the same product.
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/result.hpp"
#include "runtime/tensor.hpp"
#include "runtime/tensor_view.hpp"

namespace troupe {

// The only block size served (config.json's weight_block_size; others are refused).
constexpr int64_t kFp8BlockSize = 128;

// The scale tensor's name for a weight: "x.weight" -> "x.weight_scale_inv".
std::string fp8_scale_name(const std::string& weight_name);

// The scale shape a [out, in] weight needs with blocks [block_n, block_k].
std::vector<int64_t> fp8_scale_shape(const std::vector<int64_t>& weight_shape, int64_t block_n, int64_t block_k);

// fp32 [out, in] host tensor of `weight` (F8_E4M3, 2-D) times its block scales (F32). Errors name
// the tensor and the file: a weight that is not 2-D F8_E4M3, a scale of the wrong dtype or shape.
Result<Tensor> dequantize_fp8_block(const TensorView& weight, const TensorView& scale_inv, int64_t block_n,
                                    int64_t block_k);

// Checks that `scale_inv` is the F32 block-scale tensor of the 2-D F8_E4M3 `weight`; the error
// names both tensors and their files.
Status check_fp8_block_scale(const TensorView& weight, const TensorView& scale_inv, int64_t block_n, int64_t block_k);

// The same from a host F8_E4M3 weight carrying its block scale (Tensor::block_scale, 128x128
// blocks): an fp32 host tensor. `name` is for errors.
Result<Tensor> dequantize_fp8_block(const Tensor& weight, const std::string& name);

}  // namespace troupe
