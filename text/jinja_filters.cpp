// Jinja filters and tests, and the global functions transformers gives chat templates.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ctime>

#include "text/jinja_builtins.hpp"

namespace troupe::jinja {
namespace {

const Value* arg(const CallArgs& a, size_t i, const char* name) { return a.get(i, name); }

bool flag(const CallArgs& a, size_t i, const char* name, bool def) {
  const Value* v = a.get(i, name);
  return v ? v->truthy() : def;
}

// Jinja's attribute getter for filters: "a.b" looks up a, then b, subscript first.
Value lookup_path(const Value& item, const std::string& path) {
  Value v = item;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool numeric = !part.empty() && part.size() < 18 &&
                   std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    v = get_item(v, numeric ? Value(static_cast<int64_t>(std::stoll(part))) : Value(part));
    if (dot == std::string::npos) return v;
    start = dot + 1;
  }
}

CallArgs shift(const CallArgs& a, size_t n) {
  CallArgs out;
  for (size_t i = n; i < a.args.size(); ++i) out.args.push_back(a.args[i]);
  out.kwargs = a.kwargs;
  return out;
}

// Case-insensitive ordering key like Jinja's sort/unique/min/max default.
Value fold_case(const Value& v, bool case_sensitive) {
  return v.is_string() && !case_sensitive ? Value(ascii_case(v.as_string(), false)) : v;
}

Value filter_select(const std::string& name, const Value& value, const CallArgs& a) {
  bool attr_mode = name == "selectattr" || name == "rejectattr";
  bool keep_if = name == "select" || name == "selectattr";
  ValueList out;
  for (const Value& item : iterate(value)) {
    Value subject = item;
    size_t test_at = 0;
    if (attr_mode) {
      if (a.args.empty() || !a.args[0].is_string()) fail(name + " needs an attribute name");
      subject = lookup_path(item, a.args[0].as_string());
      test_at = 1;
    }
    bool r;
    if (a.args.size() <= test_at) {
      r = subject.truthy();
    } else {
      if (!a.args[test_at].is_string()) fail(name + " needs a test name");
      r = apply_test(a.args[test_at].as_string(), subject, shift(a, test_at + 1));
    }
    if (r == keep_if) out.push_back(item);
  }
  return Value::list(std::move(out));
}

Value filter_map(const Value& value, const CallArgs& a) {
  ValueList out;
  const Value* attribute = a.get(SIZE_MAX, "attribute");
  for (const Value& item : iterate(value)) {
    if (attribute) {
      Value v = lookup_path(item, attribute->str());
      const Value* def = a.get(SIZE_MAX, "default");
      out.push_back(v.is_undefined() && def ? *def : v);
    } else {
      if (a.args.empty() || !a.args[0].is_string()) fail("map needs a filter name or attribute=");
      out.push_back(apply_filter(a.args[0].as_string(), item, shift(a, 1)));
    }
  }
  return Value::list(std::move(out));
}

Value filter_tojson(const Value& value, const CallArgs& a) {
  // transformers: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
  JsonOptions options;
  options.ensure_ascii = flag(a, 0, "ensure_ascii", false);
  if (const Value* indent = arg(a, 1, "indent"); indent && !indent->is_none()) {
    if (indent->kind() != Value::Kind::integer) fail("tojson: only an integer indent is supported", ErrorCode::unsupported);
    options.indent = static_cast<int>(std::max<int64_t>(0, indent->as_int()));
  }
  if (const Value* sep = arg(a, 2, "separators"); sep && !sep->is_none()) {
    if (!sep->is_list() || sep->as_list().size() != 2) fail("tojson: separators must be a pair of strings");
    options.item_separator = sep->as_list()[0].str();
    options.key_separator = sep->as_list()[1].str();
    if (options.item_separator.empty()) fail("tojson: an empty item separator is unsupported", ErrorCode::unsupported);
  }
  options.sort_keys = flag(a, 3, "sort_keys", false);
  return Value(to_json(value, options));
}

Value filter_indent(const Value& value, const CallArgs& a) {
  const Value* w = arg(a, 0, "width");
  std::string pad = w && w->is_string() ? w->as_string() : std::string(static_cast<size_t>(w ? w->as_int() : 4), ' ');
  bool first = flag(a, 1, "first", false);
  bool blank = flag(a, 2, "blank", false);
  // Like Jinja: append "\n", splitlines(), indent every line but the first (and blank ones
  // only when `blank`).
  std::string s = value.str() + "\n";
  Value newline("\n");
  std::vector<std::string> lines = python_split(s, &newline, -1);
  lines.pop_back();
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) out += "\n";
    if (i > 0 && (blank || !lines[i].empty())) out += pad;
    out += lines[i];
  }
  return Value(first ? pad + out : out);
}

}  // namespace

bool is_known_filter(const std::string& name) {
  static const char* const names[] = {
      "default", "d", "string", "safe", "tojson", "length", "count", "list", "items", "selectattr",
      "rejectattr", "select", "reject", "map", "first", "last", "reverse", "join", "trim", "upper",
      "lower", "capitalize", "title", "replace", "indent", "int", "float", "abs", "round", "sort",
      "unique", "min", "max", "sum", "dictsort"};
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

bool is_known_test(const std::string& name) {
  static const char* const names[] = {
      "defined", "undefined", "none", "boolean", "true", "false", "integer", "float", "number",
      "string", "mapping", "iterable", "sequence", "callable", "lower", "upper", "even", "odd",
      "divisibleby", "eq", "equalto", "==", "ne", "!=", "lt", "lessthan", "<", "le", "<=", "gt",
      "greaterthan", ">", "ge", ">=", "in", "sameas"};
  return std::find(std::begin(names), std::end(names), name) != std::end(names);
}

Value apply_filter(const std::string& name, const Value& value, const CallArgs& a) {
  if (name == "default" || name == "d") {
    bool boolean = flag(a, 1, "boolean", false);
    bool use_default = value.is_undefined() || (boolean && !value.truthy());
    const Value* def = arg(a, 0, "default_value");
    return use_default ? (def ? *def : Value("")) : value;
  }
  if (name == "string") return Value(value.str());
  if (name == "safe") return value;
  if (name == "tojson") return filter_tojson(value, a);
  if (name == "length" || name == "count") return Value(python_length(value));
  if (name == "list") return Value::list(iterate(value));
  if (name == "items") {
    if (value.is_undefined()) return Value::list({});
    if (!value.is_dict()) fail("items filter: can only get item pairs from a mapping");
    return get_method(value, "items").as_callable()(CallArgs{});
  }
  if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") return filter_select(name, value, a);
  if (name == "map") return filter_map(value, a);
  if (name == "first" || name == "last") {
    std::vector<Value> items = iterate(value);
    if (items.empty()) return Value::undefined("No " + name + " item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "reverse") {
    if (value.is_string()) {
      std::vector<uint32_t> cps = utf8_decode(value.as_string());
      std::reverse(cps.begin(), cps.end());
      return Value(utf8_encode(cps, 0, cps.size()));
    }
    std::vector<Value> items = iterate(value);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items));
  }
  if (name == "join") {
    const Value* sep = arg(a, 0, "d");
    const Value* attribute = arg(a, 1, "attribute");
    std::string out;
    bool first = true;
    for (const Value& item : iterate(value)) {
      if (!first) out += sep ? sep->str() : "";
      first = false;
      out += (attribute ? lookup_path(item, attribute->str()) : item).str();
    }
    return Value(out);
  }
  if (name == "trim") return Value(python_strip(value.str(), arg(a, 0, "chars"), true, true));
  if (name == "upper" || name == "lower") return Value(ascii_case(value.str(), name == "upper"));
  if (name == "capitalize") return Value(python_title(value.str(), true));
  if (name == "title") return Value(jinja_title(value.str()));
  if (name == "replace") {
    const Value* from = arg(a, 0, "old");
    const Value* to = arg(a, 1, "new");
    const Value* count = arg(a, 2, "count");
    if (!from || !to) fail("replace filter needs old and new");
    return Value(python_replace(value.str(), from->str(), to->str(), count && !count->is_none() ? count->as_int() : -1));
  }
  if (name == "indent") return filter_indent(value, a);
  if (name == "int" || name == "float") {
    const Value* def = arg(a, 0, "default");
    value.require_defined();  // int(Undefined) raises in Jinja
    Value fallback = def ? *def : (name == "int" ? Value(0) : Value(0.0));
    double d;
    if (value.is_number()) {
      d = value.as_double();
    } else if (value.is_string()) {
      std::string s = python_strip(value.as_string(), nullptr, true, true);
      char* end = nullptr;
      d = std::strtod(s.c_str(), &end);
      if (s.empty() || *end != '\0') return fallback;
    } else {
      return fallback;
    }
    if (name == "int") return value.kind() == Value::Kind::integer ? value : Value(static_cast<int64_t>(d));
    return Value(d);
  }
  if (name == "abs") {
    if (!value.is_number()) fail("bad operand type for abs(): '" + value.type_name() + "'");
    return value.kind() == Value::Kind::floating ? Value(std::fabs(value.as_double())) : Value(static_cast<int64_t>(std::llabs(value.as_int())));
  }
  if (name == "round") {
    const Value* precision = arg(a, 0, "precision");
    const Value* method = arg(a, 1, "method");
    double scale = std::pow(10.0, precision ? static_cast<double>(precision->as_int()) : 0.0);
    double x = value.as_double() * scale;
    std::string m = method ? method->str() : "common";
    double r = m == "ceil" ? std::ceil(x) : m == "floor" ? std::floor(x) : std::nearbyint(x);  // Python round(): half to even
    return Value(r / scale);
  }
  if (name == "sort" || name == "unique" || name == "min" || name == "max") {
    bool case_sensitive = flag(a, name == "sort" ? 1 : 0, "case_sensitive", false);
    const Value* attribute = arg(a, name == "sort" ? 2 : 1, "attribute");
    auto key = [&](const Value& v) { return fold_case(attribute ? lookup_path(v, attribute->str()) : v, case_sensitive); };
    std::vector<Value> items = iterate(value);
    if (name == "unique") {
      ValueList out;
      std::vector<Value> seen;
      for (const Value& v : items) {
        Value k = key(v);
        if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, k); })) {
          seen.push_back(k);
          out.push_back(v);
        }
      }
      return Value::list(std::move(out));
    }
    if (name == "sort") {
      bool reverse = flag(a, 0, "reverse", false);
      std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
        return reverse ? compare(key(y), key(x)) < 0 : compare(key(x), key(y)) < 0;
      });
      return Value::list(std::move(items));
    }
    if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
    Value best = items[0];
    for (const Value& v : items) {
      int c = compare(key(v), key(best));
      if ((name == "min" && c < 0) || (name == "max" && c > 0)) best = v;
    }
    return best;
  }
  if (name == "sum") {
    const Value* attribute = arg(a, 0, "attribute");
    const Value* start = arg(a, 1, "start");
    Value total = start ? *start : Value(0);
    for (const Value& v : iterate(value)) {
      Value x = attribute ? lookup_path(v, attribute->str()) : v;
      if (!x.is_number() || !total.is_number()) fail("sum: unsupported operand types");
      bool f = x.kind() == Value::Kind::floating || total.kind() == Value::Kind::floating;
      total = f ? Value(total.as_double() + x.as_double()) : Value(total.as_int() + x.as_int());
    }
    return total;
  }
  if (name == "dictsort") {
    if (!value.is_dict()) fail("dictsort: can only sort a mapping");
    std::vector<Value> pairs = get_method(value, "items").as_callable()(CallArgs{}).as_list();
    bool case_sensitive = flag(a, 0, "case_sensitive", false);
    bool by_value = arg(a, 1, "by") && arg(a, 1, "by")->str() == "value";
    bool reverse = flag(a, 2, "reverse", false);
    std::stable_sort(pairs.begin(), pairs.end(), [&](const Value& x, const Value& y) {
      int c = compare(fold_case(x.as_list()[by_value], case_sensitive), fold_case(y.as_list()[by_value], case_sensitive));
      return reverse ? c > 0 : c < 0;
    });
    return Value::list(std::move(pairs));
  }
  fail("unsupported filter '" + name + "'", ErrorCode::unsupported);
}

bool apply_test(const std::string& name, const Value& v, const CallArgs& a) {
  using K = Value::Kind;
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.kind() == K::boolean;
  if (name == "true") return v.kind() == K::boolean && v.as_bool();
  if (name == "false") return v.kind() == K::boolean && !v.as_bool();
  if (name == "integer") return v.kind() == K::integer;
  if (name == "float") return v.kind() == K::floating;
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
  if (name == "sequence") return v.is_string() || v.is_list() || v.is_dict() || v.is_undefined();
  if (name == "callable") return v.is_callable();
  if (name == "lower" || name == "upper") {
    // Python str.islower()/isupper(): some cased character and none of the other case.
    std::string text = v.str();
    bool upper = name == "upper";
    return ascii_case(text, !upper) != text && ascii_case(text, upper) == text;
  }
  if (name == "even" || name == "odd") {
    v.require_defined();
    if (!v.is_number()) fail("'" + name + "' test needs a number");
    double r = std::fmod(std::fmod(v.as_double(), 2.0) + 2.0, 2.0);  // Python value % 2
    return name == "even" ? r == 0 : r == 1;
  }
  const Value* other = a.get(0, name == "divisibleby" ? "num" : "other");
  if (name == "divisibleby") {
    if (!other || other->as_int() == 0) fail("divisibleby needs a non-zero number");
    return v.as_int() % other->as_int() == 0;
  }
  if (!other) fail("test '" + name + "' needs an argument", ErrorCode::unsupported);
  if (name == "eq" || name == "equalto" || name == "==") return equals(v, *other);
  if (name == "ne" || name == "!=") return !equals(v, *other);
  if (name == "lt" || name == "lessthan" || name == "<") return compare(v, *other) < 0;
  if (name == "le" || name == "<=") return compare(v, *other) <= 0;
  if (name == "gt" || name == "greaterthan" || name == ">") return compare(v, *other) > 0;
  if (name == "ge" || name == ">=") return compare(v, *other) >= 0;
  if (name == "in") return contains(*other, v);
  if (name == "sameas") {
    if (v.is_list() || v.is_dict() || v.is_ns()) return other->kind() == v.kind() && &v.as_dict() == &other->as_dict();
    return v.kind() == other->kind() && equals(v, *other);
  }
  fail("unsupported test '" + name + "'", ErrorCode::unsupported);
}

Value get_global_function(const std::string& name) {
  if (name == "raise_exception") {
    return Value::function(name, [](const CallArgs& a) -> Value {
      throw Failure{ErrorCode::invalid_argument, a.args.empty() ? "" : a.args[0].str(), true};
    });
  }
  if (name == "strftime_now") {
    return Value::function(name, [](const CallArgs& a) {
      const Value* format = a.get(0, "format");
      if (!format || !format->is_string()) fail("strftime_now needs a format string");
      std::time_t now = std::time(nullptr);
      std::tm local{};
      localtime_r(&now, &local);
      char buf[512];
      size_t n = std::strftime(buf, sizeof(buf), format->as_string().c_str(), &local);
      return Value(std::string(buf, n));
    });
  }
  if (name == "namespace" || name == "dict") {
    return Value::function(name, [name](const CallArgs& a) {
      ValueDict d;
      for (const Value& v : a.args) {
        if (!v.is_dict()) fail(name + "() positional argument must be a mapping");
        for (const auto& [k, x] : v.as_dict().items) d.set(k, x);
      }
      for (const auto& [k, x] : a.kwargs) d.set(k, x);
      return name == "namespace" ? Value::ns(std::move(d)) : Value::dict(std::move(d));
    });
  }
  if (name == "range") {
    return Value::function(name, [](const CallArgs& a) {
      if (a.args.empty() || a.args.size() > 3) fail("range expected 1 to 3 arguments");
      int64_t start = a.args.size() == 1 ? 0 : a.args[0].as_int();
      int64_t stop = a.args.size() == 1 ? a.args[0].as_int() : a.args[1].as_int();
      int64_t step = a.args.size() == 3 ? a.args[2].as_int() : 1;
      if (step == 0) fail("range() arg 3 must not be zero");
      ValueList out;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        out.emplace_back(i);
        if (out.size() > 100000) fail("range too big");
      }
      return Value::list(std::move(out));
    });
  }
  return Value();
}

}  // namespace troupe::jinja
