#include "backends/build_engine.hpp"

#include <algorithm>

#include "backends/backend_factory.hpp"
#include "backends/graphed_model.hpp"
#include "backends/stage_model_factory.hpp"
#include "engine/kv_cache_sizing.hpp"
#include "runtime/logging.hpp"

namespace troupe::backends {

Result<std::unique_ptr<Model>> with_step_graphs(const Config& config, Backend& backend, std::unique_ptr<Model> model) {
  if (config.enforce_eager || !backend.supports_graphs() || !model->supports_step_graphs()) return model;
  auto max_model_len = resolve_max_model_len(config, model->config());
  if (!max_model_len.ok()) return max_model_len.error();
  StepGraphOptions graphs;
  graphs.max_batch = std::min<int64_t>(config.max_num_seqs, 256);
  graphs.max_model_len = max_model_len.value();
  log::get("engine")->info("decode steps of up to {} sequences run as step graphs (--enforce-eager: never)",
                           graphs.max_batch);
  return std::unique_ptr<Model>(std::make_unique<GraphedModel>(std::move(model), backend, graphs));
}

Result<std::unique_ptr<LlmEngine>> build_engine(const Config& config, std::unique_ptr<Backend> backend) {
  if (config.model.empty()) return make_error(ErrorCode::invalid_argument, "--model: a model folder is required");
  if (!backend) {
    auto made = make_backend(config);
    if (!made.ok()) return made.error();
    backend = std::move(made.value());
  }
  auto model = load_stage_model(config, *backend);  // --tensor-parallel-size ranks
  if (!model.ok()) return model.error();
  auto num_blocks = kv_blocks_that_fit(config, *backend, *model.value());
  if (!num_blocks.ok()) return num_blocks.error();
  auto graphed = with_step_graphs(config, *backend, std::move(model.value()));
  if (!graphed.ok()) return graphed.error();
  return LlmEngine::create(config, std::move(backend), std::move(graphed.value()), num_blocks.value());
}

}  // namespace troupe::backends
