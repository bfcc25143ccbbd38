#include "text/jinja_parser.hpp"

#include <algorithm>
#include <exception>
#include <initializer_list>

namespace troupe::jinja {
namespace {

using T = Token::Type;

class Parser {
 public:
  Parser(const std::string& source, std::vector<Token> tokens) : src_(source), tokens_(std::move(tokens)) {}

  NodeList parse() {
    std::string which;
    return parse_until({}, which);
  }

 private:
  // ---- token helpers ----
  const Token& peek(size_t ahead = 0) const { return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)]; }
  const Token& next() {
    const Token& t = peek();
    if (pos_ < tokens_.size() - 1) ++pos_;
    return t;
  }
  bool is_op(const char* op, size_t ahead = 0) const { return peek(ahead).type == T::op && peek(ahead).text == op; }
  bool is_name(const char* name, size_t ahead = 0) const { return peek(ahead).type == T::name && peek(ahead).text == name; }
  bool accept_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool accept_name(const char* name) {
    if (!is_name(name)) return false;
    next();
    return true;
  }
  std::string where(size_t pos) const { return describe_position(src_, pos); }
  std::string describe(const Token& t) const {
    switch (t.type) {
      case T::eof: return "end of template";
      case T::block_end: return "'%}'";
      case T::var_end: return "'}}'";
      case T::text: return "text";
      case T::string: return "string";
      default: return "'" + t.text + "'";
    }
  }
  [[noreturn]] void unsupported(const std::string& what, const Token& t) const {
    fail("unsupported " + what + " at " + where(t.pos), ErrorCode::unsupported);
  }
  void expect_op(const char* op) {
    if (!accept_op(op)) unsupported(describe(peek()) + " (expected '" + std::string(op) + "')", peek());
  }
  void expect(T type, const char* what) {
    if (peek().type != type) unsupported(describe(peek()) + " (expected " + what + ")", peek());
    next();
  }
  std::string expect_identifier() {
    if (peek().type != T::name) unsupported(describe(peek()) + " (expected a name)", peek());
    return next().text;
  }

  // NOTE: recursive descent: bound the nesting so an untrusted template cannot exhaust the stack.
  static constexpr int kMaxNesting = 100;
  struct NestingGuard {
    Parser& parser;
    NestingGuard(Parser& p, const Token& t) : parser(p) {
      if (++parser.nesting_ > kMaxNesting)
        parser.unsupported("nesting deeper than " + std::to_string(kMaxNesting) + " levels", t);
    }
    ~NestingGuard() { --parser.nesting_; }
  };

  // ---- statements ----
  NodeList parse_until(std::initializer_list<const char*> ends, std::string& which) {
    NodeList nodes;
    while (true) {
      const Token& t = peek();
      if (t.type == T::eof) {
        if (ends.size() == 0) return nodes;
        unsupported("end of template (missing {% " + std::string(*(ends.end() - 1)) + " %})", t);
      }
      if (t.type == T::text) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::text;
        n->pos = t.pos;
        n->text = next().text;
        nodes.push_back(std::move(n));
      } else if (t.type == T::var_begin) {
        next();
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::output;
        n->pos = t.pos;
        n->expr = parse_tuple(true);
        expect(T::var_end, "'}}'");
        nodes.push_back(std::move(n));
      } else if (t.type == T::block_begin) {
        const Token& name = peek(1);
        for (const char* end : ends) {
          if (name.type == T::name && name.text == end) {
            next();
            next();
            which = end;
            return nodes;
          }
        }
        next();
        nodes.push_back(parse_statement());
      } else {
        unsupported(describe(t), t);
      }
    }
  }

  NodePtr parse_statement() {
    NestingGuard guard(*this, peek());
    const Token& t = peek();
    if (t.type != T::name) unsupported(describe(t) + " at the start of a block tag", t);
    std::string keyword = next().text;
    auto n = std::make_unique<Node>();
    n->pos = t.pos;
    std::string which;
    if (keyword == "if") {
      parse_if_rest(*n);
      return n;
    }
    if (keyword == "for") {
      n->kind = Node::Kind::for_;
      n->targets.push_back(expect_identifier());
      while (accept_op(",")) n->targets.push_back(expect_identifier());
      if (!accept_name("in")) unsupported(describe(peek()) + " (expected 'in')", peek());
      n->expr = parse_tuple(false);
      if (accept_name("if")) n->filter = parse_expr(true);
      if (is_name("recursive")) unsupported("recursive for loop", peek());
      expect(T::block_end, "'%}'");
      ++loop_depth_;
      n->body = parse_until({"else", "endfor"}, which);
      --loop_depth_;
      if (which == "else") {
        expect(T::block_end, "'%}'");
        n->else_body = parse_until({"endfor"}, which);
      }
      expect(T::block_end, "'%}'");
      return n;
    }
    if (keyword == "set") {
      n->targets.push_back(expect_identifier());
      if (accept_op(".")) {
        n->attr = expect_identifier();
      } else {
        while (accept_op(",")) n->targets.push_back(expect_identifier());
      }
      if (accept_op("=")) {
        n->kind = Node::Kind::set;
        n->expr = parse_tuple(true);
        expect(T::block_end, "'%}'");
        return n;
      }
      if (!n->attr.empty() || n->targets.size() != 1) unsupported("block set target", t);
      n->kind = Node::Kind::set_block;
      expect(T::block_end, "'%}'");
      n->body = parse_until({"endset"}, which);
      expect(T::block_end, "'%}'");
      return n;
    }
    if (keyword == "macro") {
      n->kind = Node::Kind::macro;
      n->text = expect_identifier();
      expect_op("(");
      while (!accept_op(")")) {
        std::string param = expect_identifier();
        ExprPtr def;
        if (accept_op("=")) def = parse_expr(true);
        n->params.emplace_back(param, std::move(def));
        if (!is_op(")")) expect_op(",");
      }
      expect(T::block_end, "'%}'");
      int saved_depth = loop_depth_;
      loop_depth_ = 0;
      n->body = parse_until({"endmacro"}, which);
      loop_depth_ = saved_depth;
      if (peek().type == T::name) next();  // {% endmacro name %}
      expect(T::block_end, "'%}'");
      return n;
    }
    if (keyword == "break" || keyword == "continue") {
      if (loop_depth_ == 0) unsupported("'" + keyword + "' outside a for loop", t);
      n->kind = keyword == "break" ? Node::Kind::break_ : Node::Kind::continue_;
      expect(T::block_end, "'%}'");
      return n;
    }
    if (keyword == "generation") {
      n->kind = Node::Kind::scope;
      expect(T::block_end, "'%}'");
      n->body = parse_until({"endgeneration"}, which);
      expect(T::block_end, "'%}'");
      return n;
    }
    unsupported("statement '" + keyword + "'", t);
  }

  // After `if` (or `elif`): condition, body, then elif/else/endif.
  void parse_if_rest(Node& n) {
    n.kind = Node::Kind::if_;
    n.expr = parse_tuple(true);
    expect(T::block_end, "'%}'");
    std::string which;
    n.body = parse_until({"elif", "else", "endif"}, which);
    if (which == "elif") {
      auto elif = std::make_unique<Node>();
      elif->pos = peek().pos;
      parse_if_rest(*elif);
      n.else_body.push_back(std::move(elif));
      return;
    }
    if (which == "else") {
      expect(T::block_end, "'%}'");
      n.else_body = parse_until({"endif"}, which);
    }
    expect(T::block_end, "'%}'");
  }

  // ---- expressions ----
  ExprPtr make(Expr::Kind kind, size_t pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
  }

  ExprPtr parse_tuple(bool with_cond) {
    size_t pos = peek().pos;
    ExprPtr first = parse_expr(with_cond);
    if (!is_op(",")) return first;
    auto tuple = make(Expr::Kind::tuple, pos);
    tuple->args.push_back(std::move(first));
    while (accept_op(",")) {
      if (peek().type == T::block_end || peek().type == T::var_end || is_op(")")) break;
      tuple->args.push_back(parse_expr(with_cond));
    }
    return tuple;
  }

  ExprPtr parse_expr(bool with_cond) {
    NestingGuard guard(*this, peek());
    ExprPtr e = parse_or();
    while (with_cond && is_name("if")) {
      auto c = make(Expr::Kind::cond, next().pos);
      c->args.push_back(parse_or());
      c->args.push_back(std::move(e));
      c->args.push_back(accept_name("else") ? parse_expr(true) : nullptr);
      e = std::move(c);
    }
    return e;
  }

  ExprPtr binary(const std::string& op, ExprPtr a, ExprPtr b, size_t pos) {
    auto e = make(Expr::Kind::binary, pos);
    e->name = op;
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr e = parse_and();
    while (is_name("or")) {
      size_t pos = next().pos;
      e = binary("or", std::move(e), parse_and(), pos);
    }
    return e;
  }

  ExprPtr parse_and() {
    ExprPtr e = parse_not();
    while (is_name("and")) {
      size_t pos = next().pos;
      e = binary("and", std::move(e), parse_not(), pos);
    }
    return e;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      NestingGuard guard(*this, peek());
      auto e = make(Expr::Kind::unary, next().pos);
      e->name = "not";
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    size_t pos = peek().pos;
    ExprPtr first = parse_math1();
    auto cmp = make(Expr::Kind::compare, pos);
    cmp->args.push_back(std::move(first));
    while (true) {
      const Token& t = peek();
      if (t.type == T::op && (t.text == "==" || t.text == "!=" || t.text == "<" || t.text == "<=" ||
                              t.text == ">" || t.text == ">=")) {
        cmp->ops.push_back(next().text);
      } else if (is_name("in")) {
        next();
        cmp->ops.push_back("in");
      } else if (is_name("not") && is_name("in", 1)) {
        next();
        next();
        cmp->ops.push_back("not in");
      } else {
        break;
      }
      cmp->args.push_back(parse_math1());
    }
    if (cmp->ops.empty()) return std::move(cmp->args[0]);
    return cmp;
  }

  ExprPtr parse_math1() {
    ExprPtr e = parse_concat();
    while (is_op("+") || is_op("-")) {
      const Token& t = next();
      e = binary(t.text, std::move(e), parse_concat(), t.pos);
    }
    return e;
  }

  ExprPtr parse_concat() {
    ExprPtr e = parse_math2();
    while (is_op("~")) {
      size_t pos = next().pos;
      e = binary("~", std::move(e), parse_math2(), pos);
    }
    return e;
  }

  ExprPtr parse_math2() {
    ExprPtr e = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const Token& t = next();
      e = binary(t.text, std::move(e), parse_pow(), t.pos);
    }
    return e;
  }

  ExprPtr parse_pow() {
    ExprPtr e = parse_unary(true);
    while (is_op("**")) {
      size_t pos = next().pos;
      e = binary("**", std::move(e), parse_unary(true), pos);
    }
    return e;
  }

  ExprPtr parse_unary(bool with_filter) {
    ExprPtr e;
    if (is_op("-") || is_op("+")) {
      NestingGuard guard(*this, peek());
      const Token& t = next();
      e = make(Expr::Kind::unary, t.pos);
      e->name = t.text;
      e->args.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    if (t.type == T::name) {
      next();
      if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False") {
        auto e = make(Expr::Kind::literal, t.pos);
        e->value = Value(t.text == "true" || t.text == "True");
        return e;
      }
      if (t.text == "none" || t.text == "None") {
        auto e = make(Expr::Kind::literal, t.pos);
        e->value = Value::none();
        return e;
      }
      auto e = make(Expr::Kind::name, t.pos);
      e->name = t.text;
      return e;
    }
    if (t.type == T::string) {
      std::string s = next().text;
      while (peek().type == T::string) s += next().text;
      auto e = make(Expr::Kind::literal, t.pos);
      e->value = Value(s);
      return e;
    }
    if (t.type == T::integer || t.type == T::floating) {
      next();
      auto e = make(Expr::Kind::literal, t.pos);
      e->value = t.type == T::integer ? Value(t.int_value) : Value(t.float_value);
      return e;
    }
    if (is_op("(")) {
      next();
      if (accept_op(")")) return make(Expr::Kind::tuple, t.pos);
      ExprPtr first = parse_expr(true);
      if (accept_op(")")) return first;
      auto tuple = make(Expr::Kind::tuple, t.pos);
      tuple->args.push_back(std::move(first));
      while (accept_op(",")) {
        if (is_op(")")) break;
        tuple->args.push_back(parse_expr(true));
      }
      expect_op(")");
      return tuple;
    }
    if (is_op("[")) {
      next();
      auto list = make(Expr::Kind::list, t.pos);
      while (!accept_op("]")) {
        list->args.push_back(parse_expr(true));
        if (!is_op("]")) expect_op(",");
      }
      return list;
    }
    if (is_op("{")) {
      next();
      auto dict = make(Expr::Kind::dict, t.pos);
      while (!accept_op("}")) {
        dict->args.push_back(parse_expr(true));
        expect_op(":");
        dict->args.push_back(parse_expr(true));
        if (!is_op("}")) expect_op(",");
      }
      return dict;
    }
    unsupported(describe(t) + " in an expression", t);
  }

  ExprPtr parse_postfix(ExprPtr e) {
    while (true) {
      if (is_op(".")) {
        size_t pos = next().pos;
        if (peek().type == T::integer) {
          auto item = make(Expr::Kind::get_item, pos);
          auto index = make(Expr::Kind::literal, pos);
          index->value = Value(next().int_value);
          item->args.push_back(std::move(e));
          item->args.push_back(std::move(index));
          e = std::move(item);
          continue;
        }
        auto attr = make(Expr::Kind::get_attr, pos);
        attr->name = expect_identifier();
        attr->args.push_back(std::move(e));
        e = std::move(attr);
      } else if (is_op("[")) {
        e = parse_subscript(std::move(e));
      } else if (is_op("(")) {
        e = parse_call(std::move(e), Expr::Kind::call);
      } else {
        return e;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr target) {
    size_t pos = next().pos;  // '['
    ExprPtr parts[3];
    int part = 0;
    bool is_slice = false;
    while (!is_op("]")) {
      if (accept_op(":")) {
        is_slice = true;
        if (++part > 2) unsupported("slice with more than two ':'", peek());
        continue;
      }
      if (parts[part]) unsupported(describe(peek()) + " in a subscript", peek());
      parts[part] = parse_expr(true);
    }
    next();  // ']'
    if (!is_slice && !parts[0]) unsupported("empty subscript", tokens_[pos_ - 1]);
    auto e = make(is_slice ? Expr::Kind::slice : Expr::Kind::get_item, pos);
    e->args.push_back(std::move(target));
    e->args.push_back(std::move(parts[0]));
    if (is_slice) {
      e->args.push_back(std::move(parts[1]));
      e->args.push_back(std::move(parts[2]));
    }
    return e;
  }

  // Call arguments `(a, b, key=c)` appended to e->args / e->kwargs.
  void parse_call_args(Expr& e) {
    expect_op("(");
    while (!accept_op(")")) {
      if (is_op("*") || is_op("**")) unsupported("*args in a call", peek());
      if (peek().type == T::name && is_op("=", 1)) {
        std::string key = next().text;
        next();
        e.kwargs.emplace_back(key, parse_expr(true));
      } else {
        e.args.push_back(parse_expr(true));
      }
      if (!is_op(")")) expect_op(",");
    }
  }

  ExprPtr parse_call(ExprPtr callee, Expr::Kind kind) {
    auto e = make(kind, peek().pos);
    e->args.push_back(std::move(callee));
    parse_call_args(*e);
    return e;
  }

  std::string parse_dotted_name() {
    std::string name = expect_identifier();
    while (is_op(".") && peek(1).type == T::name) {
      next();
      name += "." + next().text;
    }
    return name;
  }

  ExprPtr parse_filter_expr(ExprPtr e) {
    while (true) {
      if (is_op("|")) {
        size_t pos = next().pos;
        auto f = make(Expr::Kind::filter, pos);
        f->name = parse_dotted_name();
        f->args.push_back(std::move(e));
        if (is_op("(")) parse_call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        size_t pos = next().pos;
        auto t = make(Expr::Kind::test, pos);
        t->negated = accept_name("not");
        t->name = parse_dotted_name();
        t->args.push_back(std::move(e));
        const Token& a = peek();
        if (is_op("(")) {
          parse_call_args(*t);
        } else if ((a.type == T::name || a.type == T::string || a.type == T::integer || a.type == T::floating ||
                    is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          if (is_name("is")) unsupported("chained 'is' tests", a);
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        e = parse_call(std::move(e), Expr::Kind::call);
      } else {
        return e;
      }
    }
  }

  const std::string& src_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int loop_depth_ = 0;  // enclosing for loops (break/continue need one)
  int nesting_ = 0;     // statements and expressions being parsed, inside one another
};

}  // namespace

Result<NodeList> parse_template(const std::string& source, const LexOptions& options) {
  auto tokens = lex(source, options);
  if (!tokens.ok()) return tokens.error();
  try {
    return Parser(source, std::move(tokens.value())).parse();
  } catch (const Failure& f) {
    return make_error(f.code, "chat template: " + f.message);
  } catch (const std::exception& e) {
    return make_error(ErrorCode::internal, std::string("chat template: parse failed: ") + e.what());
  }
}

}  // namespace troupe::jinja
