#pragma once
// Feed-forward layers behind one small interface (dense SwiGLU now; MoE later).
#include <memory>
#include <string>

#include "runtime/backend.hpp"
#include "runtime/model.hpp"
#include "runtime/model_config.hpp"

namespace troupe {

class MlpLayer {
 public:
  virtual ~MlpLayer() = default;
  // x: [num_tokens, hidden] (normed) -> out: [num_tokens, hidden].
  virtual void forward(const Tensor& x, Tensor out) = 0;
};

// Llama / Qwen2 SwiGLU: down(silu(gate(x)) * up(x)); biases when config.mlp_bias. gate and up are
// fused at load time into one weight: one product, then Backend::silu_and_mul_packed.
class LlamaMlp final : public MlpLayer {
 public:
  // prefix: "model.layers.N.mlp."
  static Result<std::unique_ptr<LlamaMlp>> load(const ModelConfig& config, const std::string& prefix,
                                                const WeightLoader& weights, Backend& backend);
  void forward(const Tensor& x, Tensor out) override;
  const Tensor& gate_up_weight() const { return gate_up_weight_; }  // for Backend::pack_moe_experts
  const Tensor& down_weight() const { return down_weight_; }

 private:
  explicit LlamaMlp(Backend& backend) : backend_(backend) {}

  Backend& backend_;
  int64_t intermediate_ = 0;
  Tensor gate_up_weight_;  // [2 * intermediate, hidden]: gate rows, then up rows
  Tensor down_weight_;     // [hidden, intermediate]
  Tensor gate_up_bias_, down_bias_;  // [2 * intermediate], [hidden] or undefined
};

}  // namespace troupe
