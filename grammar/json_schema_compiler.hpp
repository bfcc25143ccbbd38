#pragma once
// JSON Schema (the subset structured outputs use) compiled to an Expr over UTF-8 bytes.
//
// Supported: type (one or a list), properties + required (members come in the schema's order;
// optional ones may be left out), additionalProperties (false, or a schema for map-like objects
// without properties), items, prefixItems, minItems/maxItems, enum, const, anyOf, oneOf (as
// anyOf), allOf of one schema, $ref to "#", "#/$defs/..." or "#/definitions/...", string
// minLength/maxLength/pattern/format (date, time, date-time, uuid, email, ipv4, uri), integer and
// number minimum/maximum (integral bounds; exclusive ones for integers), nullable, and the
// annotations (title, description, default, examples, $schema, $id, $comment, ...).
// Anything else is an error naming the keyword and where it is.
//
// Bounded so a random model cannot run forever: whitespace between tokens is at most
// `max_whitespace` characters of [ \t\n\r], integers at most 19 digits, fractions 16, exponents 2 (every number fits a double);
// recursion ($ref cycles, and any JSON value under json_object) unrolls to `max_depth` levels.
#include <string>

#include "grammar/expr.hpp"
#include "runtime/result.hpp"

namespace troupe::grammar {

struct JsonGrammarOptions {
  int64_t max_whitespace = 4;
  int64_t max_depth = 4;
};

Result<ExprPtr> compile_json_schema(const std::string& schema_text, const JsonGrammarOptions& options = {});
// Any JSON object (OpenAI's json_object), nested up to options.max_depth.
ExprPtr any_json_object(const JsonGrammarOptions& options = {});
// One of `choices` exactly (vLLM's guided_choice): the strings as they are, not quoted.
Result<ExprPtr> compile_choice(const std::string& choices_json_array);

}  // namespace troupe::grammar
