#pragma once
// The request body fields troupe knows, per endpoint. vLLM ignores fields it does not know and
// logs them ("The following fields were present in the request but ignored"); troupe does the
// same: the parser collects them and the route logs one line naming them.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace troupe::http {

enum class Endpoint;

// The body's top-level keys that `endpoint` does not know, sorted.
std::vector<std::string> ignored_fields(const nlohmann::json& body, Endpoint endpoint);

}  // namespace troupe::http
