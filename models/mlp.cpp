#include "models/mlp.hpp"

#include "models/attention.hpp"

namespace troupe {

Result<std::unique_ptr<LlamaMlp>> LlamaMlp::load(const ModelConfig& config, const std::string& prefix,
                                                 const WeightLoader& weights, Backend& backend) {
  std::unique_ptr<LlamaMlp> mlp(new LlamaMlp(backend));
  const int64_t hidden = config.hidden_size, inter = config.intermediate_size;
  mlp->intermediate_ = inter;
  const std::string gate = prefix + "gate_proj.", up = prefix + "up_proj.", down = prefix + "down_proj.";
  auto gate_up =
      load_fused_weight(weights, backend, {{gate + "weight", {inter, hidden}}, {up + "weight", {inter, hidden}}});
  if (!gate_up.ok()) return gate_up.error();
  mlp->gate_up_weight_ = std::move(gate_up.value());
  auto down_weight = load_weight(weights, backend, down + "weight", {hidden, inter});
  if (!down_weight.ok()) return down_weight.error();
  mlp->down_weight_ = std::move(down_weight.value());
  if (config.mlp_bias) {
    auto gate_up_bias = load_fused_weight(weights, backend, {{gate + "bias", {inter}}, {up + "bias", {inter}}});
    if (!gate_up_bias.ok()) return gate_up_bias.error();
    mlp->gate_up_bias_ = std::move(gate_up_bias.value());
    auto down_bias = load_weight(weights, backend, down + "bias", {hidden});
    if (!down_bias.ok()) return down_bias.error();
    mlp->down_bias_ = std::move(down_bias.value());
  }
  return mlp;
}

void LlamaMlp::forward(const Tensor& x, Tensor out) {
  backend_.mlp(x, gate_up_weight_, gate_up_bias_, down_weight_, down_bias_, out);
}

}  // namespace troupe
