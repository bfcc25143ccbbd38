#pragma once
// The one assembly of an engine: the backend (--device), the model with its tensor-parallel ranks
// (--tensor-parallel-size), a KV cache sized from memory (or --num-kv-blocks), step graphs unless
// --enforce-eager. `troupe serve`, `troupe generate` and the tests build engines through here.
#include <memory>

#include "engine/llm_engine.hpp"
#include "runtime/backend.hpp"
#include "runtime/config.hpp"
#include "runtime/model.hpp"

namespace troupe::backends {

// `backend` nullptr: make_backend(config). Errors name the file, tensor or flag.
Result<std::unique_ptr<LlmEngine>> build_engine(const Config& config, std::unique_ptr<Backend> backend = nullptr);

// Wraps `model` in a GraphedModel when the backend records graphs, the model allows them and
// --enforce-eager is off; otherwise returns it unchanged.
Result<std::unique_ptr<Model>> with_step_graphs(const Config& config, Backend& backend, std::unique_ptr<Model> model);

}  // namespace troupe::backends
