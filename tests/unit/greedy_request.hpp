#pragma once
// Test support: a greedy request that runs to max_tokens (EOS ignored).
#include <string>
#include <vector>

#include "engine/serving_engine.hpp"

namespace troupe::testing {

inline GenerationRequest greedy(const std::string& id, std::vector<int32_t> prompt, int64_t max_tokens) {
  GenerationRequest r;
  r.request_id = id;
  r.prompt_ids = std::move(prompt);
  r.params.temperature = 0.0;
  r.params.max_tokens = max_tokens;
  r.params.ignore_eos = true;
  return r;
}

}  // namespace troupe::testing
