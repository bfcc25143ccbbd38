#pragma once
// The value type of troupe's small Jinja interpreter: Python-like none/bool/int/float/str/list/
// dict plus Jinja's undefined, namespace and callables. Lists, dicts and namespaces are shared
// (reference semantics, like Python objects); strings are UTF-8.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/result.hpp"

namespace troupe::jinja {

// Thrown inside the interpreter only; Template::parse/render turn it into an Error.
struct Failure {
  ErrorCode code = ErrorCode::invalid_argument;
  std::string message;
  bool from_template = false;  // raise_exception(message): reported verbatim
};
[[noreturn]] void fail(std::string message, ErrorCode code = ErrorCode::invalid_argument);

class Value;
using ValueList = std::vector<Value>;

struct ValueDict {
  std::vector<std::pair<std::string, Value>> items;  // insertion order, like a Python dict
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value value);
};

struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
  // Positional `index` or keyword `name`; nullptr when absent.
  const Value* get(size_t index, const std::string& name) const;
};
using Callable = std::function<Value(const CallArgs&)>;

class Value {
 public:
  enum class Kind { undefined, none, boolean, integer, floating, string, list, dict, ns, callable };

  Value() = default;  // undefined
  Value(bool b) : kind_(Kind::boolean), int_(b) {}
  Value(int64_t i) : kind_(Kind::integer), int_(i) {}
  Value(int i) : kind_(Kind::integer), int_(i) {}
  Value(double d) : kind_(Kind::floating), float_(d) {}
  Value(std::string s) : kind_(Kind::string), str_(std::move(s)) {}
  Value(const char* s) : kind_(Kind::string), str_(s) {}
  static Value none();
  static Value undefined(std::string hint);  // hint: why it is undefined, for errors
  static Value list(ValueList items, bool is_tuple = false);
  static Value dict(ValueDict d = {});
  static Value ns(ValueDict d = {});
  static Value function(std::string name, Callable fn);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::undefined; }
  bool is_none() const { return kind_ == Kind::none; }
  bool is_string() const { return kind_ == Kind::string; }
  bool is_number() const { return kind_ == Kind::integer || kind_ == Kind::floating || kind_ == Kind::boolean; }
  bool is_list() const { return kind_ == Kind::list; }
  bool is_tuple() const { return kind_ == Kind::list && tuple_; }
  bool is_dict() const { return kind_ == Kind::dict; }
  bool is_ns() const { return kind_ == Kind::ns; }
  bool is_callable() const { return kind_ == Kind::callable; }

  bool as_bool() const { return int_ != 0; }
  int64_t as_int() const;     // bool/int/float
  double as_double() const;   // bool/int/float
  const std::string& as_string() const { return str_; }
  ValueList& as_list() const { return *list_; }
  ValueDict& as_dict() const { return *dict_; }  // dict and namespace
  const Callable& as_callable() const { return *fn_; }
  const std::string& hint() const { return str_; }  // undefined's hint, callable's name

  bool truthy() const;
  std::string str() const;   // Python str(): what {{ x }} prints
  std::string repr() const;  // Python repr(): used inside lists and dicts
  std::string type_name() const;
  // Raises Jinja's UndefinedError for operations that need a value.
  const Value& require_defined() const;

 private:
  Kind kind_ = Kind::undefined;
  bool tuple_ = false;
  int64_t int_ = 0;
  double float_ = 0;
  std::string str_;
  std::shared_ptr<ValueList> list_;
  std::shared_ptr<ValueDict> dict_;
  std::shared_ptr<Callable> fn_;
};

// While one is alive on this thread, the namespaces created are remembered, and its end empties
// them. A namespace is the one value a template can change after making it, so every cycle of
// shared pointers runs through one (`{% set ns.self = ns %}`, or `ns.a = [ns]`): Python's collector
// frees those, shared pointers never would. Template::render holds one; nothing made during a
// render outlives it but the text.
class NamespaceScope {
 public:
  NamespaceScope();
  ~NamespaceScope();
  NamespaceScope(const NamespaceScope&) = delete;
  NamespaceScope& operator=(const NamespaceScope&) = delete;

 private:
  std::vector<std::weak_ptr<ValueDict>> made_;
  std::vector<std::weak_ptr<ValueDict>>* outer_;
};

bool equals(const Value& a, const Value& b);  // Python ==
int compare(const Value& a, const Value& b);  // Python <, >: -1/0/1, fails on mixed types
std::string python_float_repr(double d);

// json.dumps(value, ensure_ascii, indent, separators, sort_keys) as Python writes it.
struct JsonOptions {
  bool ensure_ascii = false;
  int indent = -1;  // -1: None (one line)
  std::string item_separator;  // empty: Python's default (", " or "," with indent)
  std::string key_separator = ": ";
  bool sort_keys = false;
};
std::string to_json(const Value& value, const JsonOptions& options);

// UTF-8 helpers: strings index by code point, like Python.
std::vector<uint32_t> utf8_decode(const std::string& s);
std::string utf8_encode(const std::vector<uint32_t>& cps, size_t begin, size_t end);
void utf8_append(std::string& out, uint32_t cp);

}  // namespace troupe::jinja
