#include "runtime/mlp.hpp"

#include "runtime/attention.hpp"

namespace troupe {

Result<std::unique_ptr<LlamaMlp>> LlamaMlp::load(const ModelConfig& config, const std::string& prefix,
                                                 const WeightLoader& weights, Backend& backend) {
  std::unique_ptr<LlamaMlp> mlp(new LlamaMlp(backend));
  const int64_t hidden = config.hidden_size, inter = config.intermediate_size;
  mlp->intermediate_ = inter;
  struct Spec {
    const char* name;
    int64_t out;
    int64_t in;
    Tensor* weight;
    Tensor* bias;
  };
  const Spec specs[] = {
      {"gate_proj", inter, hidden, &mlp->gate_weight_, &mlp->gate_bias_},
      {"up_proj", inter, hidden, &mlp->up_weight_, &mlp->up_bias_},
      {"down_proj", hidden, inter, &mlp->down_weight_, &mlp->down_bias_},
  };
  for (const auto& s : specs) {
    auto w = load_weight(weights, backend, prefix + s.name + ".weight", {s.out, s.in});
    if (!w.ok()) return w.error();
    *s.weight = std::move(w.value());
    if (config.mlp_bias) {
      auto b = load_weight(weights, backend, prefix + s.name + ".bias", {s.out});
      if (!b.ok()) return b.error();
      *s.bias = std::move(b.value());
    }
  }
  return mlp;
}

void LlamaMlp::forward(const Tensor& x, Tensor out) {
  const int64_t n = x.size(0);
  Tensor gate = backend_.empty(DType::f32, {n, intermediate_});
  Tensor up = backend_.empty(DType::f32, {n, intermediate_});
  backend_.linear(x, gate_weight_, gate_bias_, gate);
  backend_.linear(x, up_weight_, up_bias_, up);
  backend_.silu_and_mul(gate, up, gate);
  backend_.linear(gate, down_weight_, down_bias_, out);
}

}  // namespace troupe
