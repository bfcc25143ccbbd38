#pragma once
// The sampling defaults a request that leaves a field out gets, as vLLM resolves them:
// --generation-config auto (the model folder's generation_config.json), vllm (none: OpenAI's
// defaults) or a folder holding a generation_config.json, then --override-generation-config
// (a JSON object, e.g. {"temperature": 0.5}) on top.
#include "runtime/config.hpp"
#include "runtime/model_config.hpp"
#include "runtime/result.hpp"

namespace troupe::http {

// Errors name the flag: a folder without generation_config.json, bad JSON, a bad value.
Result<GenerationDefaults> load_generation_defaults(const Config& config);

}  // namespace troupe::http
