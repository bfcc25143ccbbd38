#include "engine/prompt_logprobs.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace troupe {

PromptLogprob compute_prompt_logprob(const float* logits, int64_t vocab, int32_t token, int64_t num_top) {
  float max_value = -std::numeric_limits<float>::infinity();
  for (int64_t i = 0; i < vocab; ++i) max_value = std::max(max_value, logits[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(logits[i]) - double(max_value));
  const double log_sum = double(max_value) + std::log(sum);
  auto logprob = [&](int64_t id) { return float(double(logits[id]) - log_sum); };

  PromptLogprob out;
  out.token_id = token;
  out.logprob = logprob(token);
  const float x = logits[token];
  int64_t num_higher = 0;
  for (int64_t i = 0; i < vocab; ++i) num_higher += logits[i] > x ? 1 : 0;
  out.rank = num_higher + 1;
  num_top = std::clamp<int64_t>(num_top, 0, vocab);
  if (num_top > 0) {
    std::vector<int32_t> order(static_cast<size_t>(vocab));
    std::iota(order.begin(), order.end(), 0);
    auto better = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::partial_sort(order.begin(), order.begin() + num_top, order.end(), better);
    out.top.reserve(size_t(num_top));
    for (int64_t k = 0; k < num_top; ++k) out.top.emplace_back(order[size_t(k)], logprob(order[size_t(k)]));
  }
  return out;
}

}  // namespace troupe
