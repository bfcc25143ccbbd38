#pragma once
// The pieces of JSON every schema is made of: bounded whitespace, strings (escapes and UTF-8,
// optional length bounds), numbers (optional integral bounds), and any value / object nested up
// to a depth. Used by json_schema_compiler.
#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "grammar/expr.hpp"
#include "grammar/json_schema_compiler.hpp"
#include "runtime/result.hpp"

namespace troupe::grammar {

class JsonTerminals {
 public:
  explicit JsonTerminals(const JsonGrammarOptions& options);

  const JsonGrammarOptions& options() const { return options_; }
  const ExprPtr& ws() const { return ws_; }
  // A JSON string of min_chars..max_chars characters (max -1: unbounded); an escape or a
  // multi-byte UTF-8 sequence counts as one character.
  ExprPtr string(int64_t min_chars, int64_t max_chars) const;
  // integer / number with the schema's minimum, maximum, exclusiveMinimum, exclusiveMaximum.
  Result<ExprPtr> number(bool is_integer, const nlohmann::ordered_json& schema, const std::string& path) const;
  ExprPtr any_value(int64_t depth) const;  // depth 0: scalars only
  ExprPtr any_object(int64_t depth) const;

 private:
  JsonGrammarOptions options_;
  ExprPtr ws_;
  ExprPtr char_;      // one JSON string character (raw or escaped)
  ExprPtr integer_;   // -?(0|[1-9][0-9]{0,18})
  ExprPtr fraction_;  // \.[0-9]{1,16}
  ExprPtr exponent_;  // [eE][+-]?[0-9]{1,2}
};

// `e` (over decoded string bytes, as a `pattern`) rewritten to match the JSON-escaped form
// inside quotes: '"' and '\' and control bytes become their escapes.
ExprPtr json_escaped(const ExprPtr& e);

}  // namespace troupe::grammar
