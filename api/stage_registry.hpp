#pragma once
// The process-wide table of named stage functions behind register_stage().
#include <string>

#include "troupe/stage.hpp"

namespace troupe::api::detail {

// The function registered under `name`; not_found lists the registered names.
Result<StageFunction> find_stage(const std::string& name);

}  // namespace troupe::api::detail
