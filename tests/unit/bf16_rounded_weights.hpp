#pragma once
// The weights the CUDA backend computes with when it holds bf16 weights, for fp32 references on the
// CPU backend. CudaBackend::upload_weight (backends/cuda/cuda_backend.cpp) keeps every 2-D weight
// (the fused q/k/v and gate/up products, o, down, the embedding and lm_head) as f32_to_bf16 of its
// fp32 value, nearest even, and every other one (norms, biases, inv_freq) in fp32. This loader
// hands out the same values widened back to fp32 (exact), so the CPU backend computes the bf16
// model in fp32 arithmetic: what the CUDA backend would print if only its weights were rounded.
// Fusing rows before the upload does not change the values: rounding is per element.
#include <utility>

#include "runtime/dtype.hpp"
#include "runtime/model.hpp"
#include "runtime/tensor.hpp"

namespace troupe::production {

// How far the rounding of the weights alone moves the logits from transformers' fp32 ones, per unit
// of the oracle's logit RMS (at least 1), as max |logit diff| over the kept prompt rows and decode
// steps. Measured on the CPU backend (ProductionShapes.Bf16RoundedWeightsStayNearTransformers):
// 0.025 to 0.071 over the 12 fixture prompts, worst on llama-hd128-gqa4's 300-token prompt (the
// errors do not average down: attention over hundreds of keys and the residual stream amplify
// them). The bound is that worst case rounded up to the next tenth; the computation is
// deterministic, so it fails only when the rounding, the weights or the model change.
constexpr double kWeightRoundingPerRms = 0.1;

inline WeightLoader bf16_rounded(WeightLoader inner) {
  return [inner = std::move(inner)](const std::string& name, const std::vector<int64_t>& shape) -> Result<Tensor> {
    auto host = inner(name, shape);
    if (!host.ok() || host->dim() != 2 || host->dtype() != DType::f32 || host->has_block_scale()) return host;
    Tensor rounded = Tensor::empty(DType::f32, host->shape());
    const float* in = host->data<float>();
    float* out = rounded.data<float>();
    for (int64_t i = 0; i < rounded.numel(); ++i) out[i] = bf16_to_f32(f32_to_bf16(in[i]));
    return rounded;
  };
}

}  // namespace troupe::production
