#pragma once
// Control messages between a coordinator (Pipeline) and a stage host, in their own CAF type-id
// block after the cluster's (`caf::id_block::troupe_api`). Tensors never travel here.
//
//   coordinator                                     stage host
//      |--- api_spawn_stage{function, label} -------->|  opens the stage's tensor input
//      |<-- api_stage_spawned{stage_id, port} --------|  (ok=false: unknown function, ...)
//      |--- api_connect_output{stage_id, host, port} ->|  where the stage sends its outputs
//      |<-- api_reply{ok} ----------------------------|
//      |--- api_stop_stage{stage_id} (no reply) ------>|  the pipeline is gone
#include <cstdint>
#include <string>

#include <caf/meta/type_name.hpp>
#include <caf/type_id.hpp>

#include "actors/messages.hpp"

namespace troupe::api::detail {

struct api_spawn_stage {
  std::string function;
  std::string label;  // "stage 1 'square' on HOST:PORT", for errors and logs
  int64_t setup_timeout_ms = 5000;
};

struct api_stage_spawned {
  bool ok = false;
  std::string reason;
  uint64_t stage_id = 0;
  int64_t input_port = 0;
};

struct api_connect_output {
  uint64_t stage_id = 0;
  std::string host;
  int64_t port = 0;
};

struct api_reply {
  bool ok = false;
  std::string reason;
};

struct api_stop_stage {
  uint64_t stage_id = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, api_spawn_stage& x) {
  return f(caf::meta::type_name("troupe.api_spawn_stage"), x.function, x.label, x.setup_timeout_ms);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, api_stage_spawned& x) {
  return f(caf::meta::type_name("troupe.api_stage_spawned"), x.ok, x.reason, x.stage_id, x.input_port);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, api_connect_output& x) {
  return f(caf::meta::type_name("troupe.api_connect_output"), x.stage_id, x.host, x.port);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, api_reply& x) {
  return f(caf::meta::type_name("troupe.api_reply"), x.ok, x.reason);
}
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, api_stop_stage& x) {
  return f(caf::meta::type_name("troupe.api_stop_stage"), x.stage_id);
}

}  // namespace troupe::api::detail

CAF_BEGIN_TYPE_ID_BLOCK(troupe_api, caf::id_block::troupe::end)
  CAF_ADD_TYPE_ID(troupe_api, (troupe::api::detail::api_spawn_stage))
  CAF_ADD_TYPE_ID(troupe_api, (troupe::api::detail::api_stage_spawned))
  CAF_ADD_TYPE_ID(troupe_api, (troupe::api::detail::api_connect_output))
  CAF_ADD_TYPE_ID(troupe_api, (troupe::api::detail::api_reply))
  CAF_ADD_TYPE_ID(troupe_api, (troupe::api::detail::api_stop_stage))
CAF_END_TYPE_ID_BLOCK(troupe_api)
