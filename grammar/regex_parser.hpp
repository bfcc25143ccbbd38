#pragma once
// A regex subset (as vLLM's guided_regex and JSON Schema's `pattern`) parsed into an Expr over
// UTF-8 bytes: literals (any UTF-8), `.`, classes `[a-z_]` `[^...]` (ASCII ranges, single
// non-ASCII characters), escapes \d \w \s \D \W \S \n \t \r \f \v \uXXXX \xHH and escaped
// punctuation, groups `( )` `(?: )` nested up to 64 deep, alternation `|`, quantifiers ? * + {m}
// {m,} {m,n} (a lazy `?` or possessive `+` suffix is accepted and means the same here; a second
// quantifier, as in `a**`, is Python's "multiple repeat" error). The whole output must match: ^ at
// the start and $ at the end are accepted and implicit. Anything else (backreferences, lookaround,
// anchors inside) is an error naming it.
#include <string>

#include "grammar/expr.hpp"
#include "runtime/result.hpp"

namespace troupe::grammar {

Result<ExprPtr> parse_regex(const std::string& pattern);

}  // namespace troupe::grammar
