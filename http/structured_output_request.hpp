#pragma once
// The structured-output fields of a chat or completion request, read into one OutputConstraint:
// OpenAI's `response_format` ({type: text | json_object | json_schema {name, schema, strict}}),
// vLLM's `structured_outputs` {json | regex | choice | json_object} and the older `guided_json`,
// `guided_regex`, `guided_choice` (`guided_decoding_backend` and `guided_whitespace_pattern`
// are accepted and ignored). At most one constraint per request. The constraint is compiled here,
// so a schema the grammar cannot express is a 400 naming the field, before any engine sees it.
#include <string>

#include <nlohmann/json.hpp>

#include "engine/sampling_params.hpp"
#include "runtime/result.hpp"

namespace troupe::http {

// Leaves `out` none when the body asks for no constraint. Errors set `param` to the field.
Status read_structured_output(const nlohmann::json& body, OutputConstraint& out, std::string& param);

}  // namespace troupe::http
