#pragma once
// Parser for troupe's Jinja subset: tokens -> AST of statements (Node) and expressions (Expr).
// Anything outside the subset is an ErrorCode::unsupported error naming the construct and where.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "text/jinja_lexer.hpp"
#include "text/jinja_value.hpp"

namespace troupe::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    literal,    // value
    name,       // name
    list,       // args
    tuple,      // args
    dict,       // kwargs-like: keys in args[2i], values in args[2i+1]
    get_attr,   // args[0].name
    get_item,   // args[0][args[1]]
    slice,      // args[0][args[1]:args[2]:args[3]] (null children when omitted)
    call,       // args[0](args[1:], kwargs)
    filter,     // args[0] | name(args[1:], kwargs)
    test,       // args[0] is [not] name(args[1:])
    unary,      // name in {"-", "+", "not"} applied to args[0]
    binary,     // args[0] name args[1]: + - * / // % ** ~ and or
    compare,    // args[0] ops[0] args[1] ops[1] args[2]...: == != < <= > >= in "not in"
    cond,       // args[1] if args[0] else args[2] (args[2] may be null)
  };
  Kind kind = Kind::literal;
  size_t pos = 0;
  Value value;
  std::string name;
  bool negated = false;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using NodeList = std::vector<NodePtr>;

struct Node {
  enum class Kind {
    text,        // text
    output,      // {{ expr }}
    if_,         // if expr: body else else_body (elif is a nested if_ in else_body)
    for_,        // for targets in expr [if filter]: body else else_body
    set,         // set targets = expr, or set targets[0].attr = expr
    set_block,   // set targets[0] %}body{% endset
    macro,       // macro name(params): body
    break_,
    continue_,
    scope,       // body only ({% generation %}: rendered as is)
  };
  Kind kind = Kind::text;
  size_t pos = 0;
  std::string text;
  std::string attr;
  ExprPtr expr;
  ExprPtr filter;
  std::vector<std::string> targets;
  std::vector<std::pair<std::string, ExprPtr>> params;  // macro parameters with defaults
  NodeList body;
  NodeList else_body;
};

Result<NodeList> parse_template(const std::string& source, const LexOptions& options = {});

}  // namespace troupe::jinja
