#pragma once
// FP8 checkpoints with one weight scale per tensor (AutoFP8's `fp8` without weight_block_size,
// compressed-tensors "tensor") or per output channel (compressed-tensors "channel", fbgemm_fp8):
// W [out, in] F8_E4M3 with W_scale ([] or [1]; [out] or [out, 1]; F32, BF16 or F16); element
// (r, c) is fp8(r, c) * scale (or scale[r]). A per-tensor scale is the 128x128 block form with every
// block equal, so such weights stay FP8 on a backend that keeps FP8 (the block kernels serve them,
// exactly); per-channel weights are dequantized on the host (exact in fp32) and served in the
// backend's weight dtype. Activation input scales of "static" checkpoints are not read: activations
// are quantized per token and 128 channels at run time (runtime/fp8_block.hpp's products).
#include <string>

#include "runtime/result.hpp"
#include "runtime/tensor.hpp"
#include "runtime/tensor_view.hpp"

namespace troupe {

// The scale tensor's name: "x.weight" -> "x.weight_scale".
std::string fp8_weight_scale_name(const std::string& weight_name);

// The 2-D F8_E4M3 `weight` with its per-tensor or per-channel `scale` (weight_scale "tensor" or
// "channel", model_config.hpp): "tensor" and keep_fp8 give an F8_E4M3 host tensor carrying a
// 128x128 block scale (Tensor::block_scale); otherwise an fp32 host tensor. Errors name both
// tensors and their files: a weight that is not 2-D F8_E4M3, a scale of the wrong dtype or size.
Result<Tensor> fp8_scaled_weight(const TensorView& weight, const TensorView& scale, const std::string& weight_scale,
                                 bool keep_fp8);

}  // namespace troupe
