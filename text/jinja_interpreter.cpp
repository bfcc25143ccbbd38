#include "text/jinja_interpreter.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <unordered_map>

#include "text/jinja_builtins.hpp"

namespace troupe::jinja {
namespace {

using Frame = std::unordered_map<std::string, Value>;

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

[[noreturn]] void bad_operands(const std::string& op, const Value& a, const Value& b) {
  a.require_defined();
  b.require_defined();
  fail("unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'");
}

// Python's ints do not overflow; troupe's are int64, so overflow is an error, never UB.
[[noreturn]] void overflow(const std::string& op) { fail("integer overflow in '" + op + "'"); }

int64_t int_add(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r)) overflow("+");
  return r;
}
int64_t int_sub(int64_t a, int64_t b) {
  int64_t r = 0;
  if (__builtin_sub_overflow(a, b, &r)) overflow("-");
  return r;
}
int64_t int_mul(int64_t a, int64_t b, const char* op = "*") {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) overflow(op);
  return r;
}

// Exponentiation by squaring: O(log exponent) steps, overflow checked.
int64_t int_pow(int64_t base, int64_t exponent) {
  int64_t r = 1;
  while (exponent > 0) {
    if (exponent & 1) r = int_mul(r, base, "**");
    exponent >>= 1;
    if (exponent > 0) base = int_mul(base, base, "**");
  }
  return r;
}

Value arithmetic(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value(a.str() + b.str());
  bool both_numbers = a.is_number() && b.is_number();
  bool any_float = a.kind() == Value::Kind::floating || b.kind() == Value::Kind::floating;
  if (op == "+") {
    if (both_numbers) return any_float ? Value(a.as_double() + b.as_double()) : Value(int_add(a.as_int(), b.as_int()));
    if (a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
    if (a.is_list() && b.is_list()) {
      ValueList items = a.as_list();
      items.insert(items.end(), b.as_list().begin(), b.as_list().end());
      return Value::list(std::move(items), a.is_tuple());
    }
    if (a.is_string() && !b.is_undefined()) {
      fail("can only concatenate str (not \"" + b.type_name() + "\") to str");
    }
    bad_operands(op, a, b);
  }
  if (op == "*") {
    if (both_numbers) return any_float ? Value(a.as_double() * b.as_double()) : Value(int_mul(a.as_int(), b.as_int()));
    const Value* seq = a.is_string() || a.is_list() ? &a : (b.is_string() || b.is_list()) ? &b : nullptr;
    const Value* count = seq == &a ? &b : &a;
    if (seq && (count->kind() == Value::Kind::integer || count->kind() == Value::Kind::boolean)) {
      int64_t n = std::max<int64_t>(0, count->as_int());
      if (n > (int64_t{1} << 26) / std::max<int64_t>(1, python_length(*seq))) fail("repetition result too large");
      if (seq->is_string()) {
        std::string out;
        for (int64_t i = 0; i < n; ++i) out += seq->as_string();
        return Value(out);
      }
      ValueList out;
      for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq->as_list().begin(), seq->as_list().end());
      return Value::list(std::move(out));
    }
    bad_operands(op, a, b);
  }
  if (!both_numbers) bad_operands(op, a, b);
  if (op == "-") return any_float ? Value(a.as_double() - b.as_double()) : Value(int_sub(a.as_int(), b.as_int()));
  if (op == "/") {
    if (b.as_double() == 0) fail("division by zero");
    return Value(a.as_double() / b.as_double());
  }
  if (op == "//" || op == "%") {
    if (b.as_double() == 0) fail("integer division or modulo by zero");
    if (any_float) {
      double q = std::floor(a.as_double() / b.as_double());
      return op == "//" ? Value(q) : Value(a.as_double() - q * b.as_double());
    }
    const int64_t x = a.as_int(), y = b.as_int();
    if (op == "%") {  // Python's sign (the divisor's), without forming q * y, which can overflow
      if (y == -1) return Value(int64_t{0});
      int64_t r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) r += y;
      return Value(r);
    }
    if (x == std::numeric_limits<int64_t>::min() && y == -1) overflow("//");
    return Value(floor_div(x, y));
  }
  if (op == "**") {
    if (!any_float && b.as_int() >= 0) return Value(int_pow(a.as_int(), b.as_int()));
    return Value(std::pow(a.as_double(), b.as_double()));
  }
  fail("unknown operator " + op);
}

bool compare_op(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return equals(a, b);
  if (op == "!=") return !equals(a, b);
  if (op == "in") return contains(b, a);
  if (op == "not in") return !contains(b, a);
  int c = compare(a, b);
  if (op == "<") return c < 0;
  if (op == "<=") return c <= 0;
  if (op == ">") return c > 0;
  return c >= 0;
}

// Python slice semantics on [0, n): the selected indices.
std::vector<int64_t> slice_indices(int64_t n, const Value& start_v, const Value& stop_v, const Value& step_v) {
  int64_t step = step_v.is_none() || step_v.is_undefined() ? 1 : step_v.as_int();
  if (step == 0) fail("slice step cannot be zero");
  auto clamp = [&](const Value& v, int64_t def) {
    if (v.is_none() || v.is_undefined()) return def;
    int64_t i = v.as_int();
    if (i < 0) i += n;
    if (step > 0) return std::min(std::max<int64_t>(i, 0), n);
    return std::min(std::max<int64_t>(i, -1), n - 1);
  };
  int64_t start = clamp(start_v, step > 0 ? 0 : n - 1);
  int64_t stop = clamp(stop_v, step > 0 ? n : -1);
  std::vector<int64_t> out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.push_back(i);
  return out;
}

enum class Flow { normal, break_, continue_ };

class Renderer {
 public:
  Renderer(const std::string& source, const ValueDict& variables, const RenderLimits& limits)
      : src_(source), limits_(limits) {
    frames_.emplace_back();
    for (const auto& [k, v] : variables.items) frames_.back()[k] = v;
  }

  std::string run(const NodeList& nodes) {
    exec(nodes);
    return std::move(out_);
  }

 private:
  Flow exec(const NodeList& nodes) {
    for (const auto& node : nodes) {
      Flow flow = exec(*node);
      if (flow != Flow::normal) return flow;
    }
    return Flow::normal;
  }

  Flow exec(const Node& n) {
    switch (n.kind) {
      case Node::Kind::text: write(n.text); return Flow::normal;
      case Node::Kind::output: write(eval(*n.expr).str()); return Flow::normal;
      case Node::Kind::if_: return exec(eval(*n.expr).truthy() ? n.body : n.else_body);
      case Node::Kind::for_: return exec_for(n);
      case Node::Kind::set: assign(n, eval(*n.expr)); return Flow::normal;
      case Node::Kind::set_block: {
        std::string saved = std::move(out_);
        out_.clear();
        exec(n.body);
        std::string captured = std::move(out_);
        out_ = std::move(saved);
        frames_.back()[n.targets[0]] = Value(captured);
        return Flow::normal;
      }
      case Node::Kind::macro: frames_.back()[n.text] = make_macro(n); return Flow::normal;
      case Node::Kind::break_: return Flow::break_;
      case Node::Kind::continue_: return Flow::continue_;
      case Node::Kind::scope: return exec(n.body);
    }
    return Flow::normal;
  }

  void write(const std::string& text) {
    if (text.size() > limits_.max_output_bytes - std::min(out_.size(), limits_.max_output_bytes))
      fail("output exceeds the limit of " + std::to_string(limits_.max_output_bytes) + " bytes");
    out_ += text;
  }

  void count_iteration() {
    if (++num_iterations_ > limits_.max_loop_iterations)
      fail("loops ran more than the limit of " + std::to_string(limits_.max_loop_iterations) + " iterations");
  }

  void assign(const Node& n, const Value& value) {
    if (!n.attr.empty()) {
      Value target = lookup(n.targets[0]);
      if (!target.is_ns()) fail("cannot assign attribute on non-namespace object at " + describe_position(src_, n.pos));
      target.as_dict().set(n.attr, value);
      return;
    }
    bind(n.targets, value, frames_.back());
  }

  void bind(const std::vector<std::string>& targets, const Value& value, Frame& frame) {
    if (targets.size() == 1) {
      frame[targets[0]] = value;
      return;
    }
    std::vector<Value> items = iterate(value);
    if (items.size() != targets.size()) {
      fail("cannot unpack " + std::to_string(items.size()) + " values into " + std::to_string(targets.size()));
    }
    for (size_t i = 0; i < targets.size(); ++i) frame[targets[i]] = items[i];
  }

  Flow exec_for(const Node& n) {
    Value iterable = eval(*n.expr);
    if (iterable.is_none()) fail("'NoneType' object is not iterable");
    std::vector<Value> items = iterate(iterable);
    if (n.filter) {
      std::vector<Value> kept;
      for (const Value& item : items) {
        count_iteration();
        frames_.emplace_back();
        bind(n.targets, item, frames_.back());
        bool keep = eval(*n.filter).truthy();
        frames_.pop_back();
        if (keep) kept.push_back(item);
      }
      items = std::move(kept);
    }
    if (items.empty()) return exec(n.else_body);
    const int64_t length = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < length; ++i) {
      count_iteration();
      ValueDict loop;
      loop.set("index", Value(i + 1));
      loop.set("index0", Value(i));
      loop.set("revindex", Value(length - i));
      loop.set("revindex0", Value(length - i - 1));
      loop.set("first", Value(i == 0));
      loop.set("last", Value(i == length - 1));
      loop.set("length", Value(length));
      loop.set("depth", Value(1));
      loop.set("depth0", Value(0));
      loop.set("previtem", i > 0 ? items[i - 1] : Value::undefined("there is no previous item"));
      loop.set("nextitem", i + 1 < length ? items[i + 1] : Value::undefined("there is no next item"));
      loop.set("cycle", Value::function("cycle", [i](const CallArgs& a) {
                 if (a.args.empty()) fail("no items for cycling given");
                 return a.args[static_cast<size_t>(i) % a.args.size()];
               }));
      frames_.emplace_back();
      frames_.back()["loop"] = Value::dict(std::move(loop));
      bind(n.targets, items[i], frames_.back());
      Flow flow = exec(n.body);
      frames_.pop_back();
      if (flow == Flow::break_) break;
    }
    return Flow::normal;
  }

  Value make_macro(const Node& n) {
    const Node* macro = &n;
    return Value::function(n.text, [this, macro](const CallArgs& args) {
      if (macro_depth_ >= limits_.max_recursion)
        fail("macro '" + macro->text + "' nested deeper than the limit of " + std::to_string(limits_.max_recursion));
      Frame locals;
      for (size_t i = 0; i < macro->params.size(); ++i) {
        const auto& [name, def] = macro->params[i];
        const Value* given = args.get(i, name);
        locals[name] = given ? *given : def ? eval(*def) : Value::undefined("'" + name + "' is undefined");
      }
      if (args.args.size() > macro->params.size()) fail("macro '" + macro->text + "' takes not more than " + std::to_string(macro->params.size()) + " argument(s)");
      std::vector<Frame> saved_frames = {frames_.front(), std::move(locals)};
      std::swap(saved_frames, frames_);
      std::string saved_out = std::move(out_);
      out_.clear();
      ++macro_depth_;
      exec(macro->body);
      --macro_depth_;
      std::string result = std::move(out_);
      out_ = std::move(saved_out);
      std::swap(saved_frames, frames_);
      return Value(result);
    });
  }

  Value lookup(const std::string& name) const {
    for (auto it = frames_.rbegin(); it != frames_.rend(); ++it) {
      auto found = it->find(name);
      if (found != it->end()) return found->second;
    }
    Value fn = get_global_function(name);
    if (!fn.is_undefined()) return fn;
    return Value::undefined("'" + name + "' is undefined");
  }

  CallArgs eval_args(const Expr& e, size_t first) {
    CallArgs args;
    for (size_t i = first; i < e.args.size(); ++i) args.args.push_back(eval(*e.args[i]));
    for (const auto& [k, v] : e.kwargs) args.kwargs.emplace_back(k, eval(*v));
    return args;
  }

  // Every sub-expression: bounded depth (the stack) and bounded string results (memory).
  Value eval(const Expr& e) {
    struct DepthGuard {
      int& depth;
      ~DepthGuard() { --depth; }
    } guard{++expression_depth_};
    if (expression_depth_ > limits_.max_expression_depth)
      fail("expressions nested deeper than the limit of " + std::to_string(limits_.max_expression_depth));
    Value v = eval_inner(e);
    if (v.is_string() && v.as_string().size() > limits_.max_output_bytes)
      fail("a string exceeds the limit of " + std::to_string(limits_.max_output_bytes) + " bytes");
    return v;
  }

  Value eval_inner(const Expr& e) {
    switch (e.kind) {
      case Expr::Kind::literal: return e.value;
      case Expr::Kind::name: return lookup(e.name);
      case Expr::Kind::list:
      case Expr::Kind::tuple: {
        ValueList items;
        for (const auto& a : e.args) items.push_back(eval(*a));
        return Value::list(std::move(items), e.kind == Expr::Kind::tuple);
      }
      case Expr::Kind::dict: {
        ValueDict d;
        for (size_t i = 0; i + 1 < e.args.size(); i += 2) {
          Value key = eval(*e.args[i]);
          if (!key.is_string()) fail("dict keys must be strings at " + describe_position(src_, e.pos));
          d.set(key.as_string(), eval(*e.args[i + 1]));
        }
        return Value::dict(std::move(d));
      }
      case Expr::Kind::get_attr: return get_attribute(eval(*e.args[0]), e.name);
      case Expr::Kind::get_item: return get_item(eval(*e.args[0]), eval(*e.args[1]));
      case Expr::Kind::slice: return eval_slice(e);
      case Expr::Kind::call: {
        Value callee = eval(*e.args[0]);
        CallArgs args = eval_args(e, 1);
        callee.require_defined();
        if (!callee.is_callable()) fail("'" + callee.type_name() + "' object is not callable");
        return callee.as_callable()(args);
      }
      case Expr::Kind::filter: {
        Value v = eval(*e.args[0]);
        return apply_filter(e.name, v, eval_args(e, 1));
      }
      case Expr::Kind::test: {
        Value v = eval(*e.args[0]);
        bool r = apply_test(e.name, v, eval_args(e, 1));
        return Value(e.negated ? !r : r);
      }
      case Expr::Kind::unary: {
        Value v = eval(*e.args[0]);
        if (e.name == "not") return Value(!v.truthy());
        v.require_defined();
        if (!v.is_number()) fail("bad operand type for unary " + e.name + ": '" + v.type_name() + "'");
        if (e.name == "+") return v.kind() == Value::Kind::floating ? v : Value(v.as_int());
        return v.kind() == Value::Kind::floating ? Value(-v.as_double()) : Value(int_sub(0, v.as_int()));
      }
      case Expr::Kind::binary: {
        Value a = eval(*e.args[0]);
        if (e.name == "and") return a.truthy() ? eval(*e.args[1]) : a;
        if (e.name == "or") return a.truthy() ? a : eval(*e.args[1]);
        return arithmetic(e.name, a, eval(*e.args[1]));
      }
      case Expr::Kind::compare: {
        Value left = eval(*e.args[0]);
        for (size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.args[i + 1]);
          if (!compare_op(e.ops[i], left, right)) return Value(false);
          left = std::move(right);
        }
        return Value(true);
      }
      case Expr::Kind::cond: {
        if (eval(*e.args[0]).truthy()) return eval(*e.args[1]);
        if (e.args[2]) return eval(*e.args[2]);
        return Value::undefined("the inline if-expression on " + describe_position(src_, e.pos) +
                                " evaluated to false and no else section was defined.");
      }
    }
    return Value();
  }

  Value eval_slice(const Expr& e) {
    Value target = eval(*e.args[0]);
    Value bounds[3];
    for (int i = 0; i < 3; ++i) bounds[i] = e.args[i + 1] ? eval(*e.args[i + 1]) : Value::none();
    target.require_defined();
    if (target.is_string()) {
      std::vector<uint32_t> cps = utf8_decode(target.as_string());
      std::string out;
      for (int64_t i : slice_indices(static_cast<int64_t>(cps.size()), bounds[0], bounds[1], bounds[2])) {
        utf8_append(out, cps[static_cast<size_t>(i)]);
      }
      return Value(out);
    }
    if (target.is_list()) {
      const ValueList& items = target.as_list();
      ValueList out;
      for (int64_t i : slice_indices(static_cast<int64_t>(items.size()), bounds[0], bounds[1], bounds[2])) {
        out.push_back(items[static_cast<size_t>(i)]);
      }
      return Value::list(std::move(out), target.is_tuple());
    }
    fail("'" + target.type_name() + "' object is not subscriptable");
  }

  const std::string& src_;
  const RenderLimits limits_;
  std::vector<Frame> frames_;
  std::string out_;
  int macro_depth_ = 0;
  int expression_depth_ = 0;
  int64_t num_iterations_ = 0;
};

// Jinja resolves filter and test names when it compiles a template: so do we.
void check_names(const std::string& src, const Expr& e) {
  if (e.kind == Expr::Kind::filter && !is_known_filter(e.name)) {
    fail("unsupported filter '" + e.name + "' at " + describe_position(src, e.pos), ErrorCode::unsupported);
  }
  if (e.kind == Expr::Kind::test && !is_known_test(e.name)) {
    fail("unsupported test '" + e.name + "' at " + describe_position(src, e.pos), ErrorCode::unsupported);
  }
  for (const auto& a : e.args) {
    if (a) check_names(src, *a);
  }
  for (const auto& [k, v] : e.kwargs) check_names(src, *v);
}

void check_names(const std::string& src, const NodeList& nodes) {
  for (const auto& n : nodes) {
    if (n->expr) check_names(src, *n->expr);
    if (n->filter) check_names(src, *n->filter);
    for (const auto& [k, v] : n->params) {
      if (v) check_names(src, *v);
    }
    check_names(src, n->body);
    check_names(src, n->else_body);
  }
}

}  // namespace

Result<std::shared_ptr<const Template>> Template::parse(const std::string& source) {
  auto nodes = parse_template(source);
  if (!nodes.ok()) return nodes.error();
  try {
    check_names(source, nodes.value());
  } catch (const Failure& f) {
    return make_error(f.code, "chat template: " + f.message);
  }
  auto t = std::make_shared<Template>();
  t->source_ = source;
  t->nodes_ = std::move(nodes.value());
  return std::shared_ptr<const Template>(std::move(t));
}

Result<std::string> Template::render(const ValueDict& variables, const RenderLimits& limits) const {
  NamespaceScope namespaces;  // the namespaces' cycles end with the render
  try {
    return Renderer(source_, variables, limits).run(nodes_);
  } catch (const Failure& f) {
    if (f.from_template) return make_error(f.code, f.message);
    return make_error(f.code, "chat template: " + f.message);
  } catch (const std::exception& e) {  // e.g. std::out_of_range, bad_alloc: never past here
    return make_error(ErrorCode::internal, std::string("chat template: render failed: ") + e.what());
  }
}

}  // namespace troupe::jinja
