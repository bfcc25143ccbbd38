// Python semantics of values (len, in, iteration, attribute and item access) and the methods of
// str/dict/list objects. Filters, tests and global functions are in jinja_filters.cpp.
#include <algorithm>
#include <cctype>

#include "text/jinja_builtins.hpp"

namespace troupe::jinja {
namespace {

bool python_is_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0d) || (cp >= 0x1c && cp <= 0x20) || cp == 0x85 || cp == 0xa0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

std::string arg_string(const CallArgs& a, size_t i, const std::string& name, const std::string& method) {
  const Value* v = a.get(i, name);
  if (!v) fail(method + "() missing argument '" + name + "'");
  if (!v->is_string()) fail(method + "() argument must be str, not " + v->type_name());
  return v->as_string();
}

}  // namespace

std::string python_strip(const std::string& s, const Value* chars, bool left, bool right) {
  std::vector<uint32_t> cps = utf8_decode(s);
  std::vector<uint32_t> set;
  bool whitespace = !chars || chars->is_none();
  if (!whitespace) {
    if (!chars->is_string()) fail("strip arg must be None or str");
    set = utf8_decode(chars->as_string());
  }
  auto strip_it = [&](uint32_t cp) {
    return whitespace ? python_is_space(cp) : std::find(set.begin(), set.end(), cp) != set.end();
  };
  size_t begin = 0, end = cps.size();
  if (left) while (begin < end && strip_it(cps[begin])) ++begin;
  if (right) while (end > begin && strip_it(cps[end - 1])) --end;
  return utf8_encode(cps, begin, end);
}

std::vector<std::string> python_split(const std::string& s, const Value* sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (!sep || sep->is_none()) {
    std::vector<uint32_t> cps = utf8_decode(s);
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && python_is_space(cps[i])) ++i;
      if (i >= cps.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(out.size()) == maxsplit) {
        size_t end = cps.size();
        while (end > i && python_is_space(cps[end - 1])) --end;
        out.push_back(utf8_encode(cps, i, end));
        break;
      }
      size_t j = i;
      while (j < cps.size() && !python_is_space(cps[j])) ++j;
      out.push_back(utf8_encode(cps, i, j));
      i = j;
    }
    return out;
  }
  if (!sep->is_string()) fail("must be str or None, not " + sep->type_name());
  const std::string& d = sep->as_string();
  if (d.empty()) fail("empty separator");
  size_t start = 0;
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    size_t found = s.find(d, start);
    if (found == std::string::npos) break;
    out.push_back(s.substr(start, found - start));
    start = found + d.size();
  }
  out.push_back(s.substr(start));
  return out;
}

// Simple case mapping for ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic (what chat
// templates meet in practice); other code points are left as they are.
static uint32_t map_case(uint32_t c, bool upper) {
  if (upper) {
    if ((c >= 'a' && c <= 'z') || (c >= 0xe0 && c <= 0xfe && c != 0xf7) || (c >= 0x3b1 && c <= 0x3cb && c != 0x3c2) ||
        (c >= 0x430 && c <= 0x44f)) {
      return c - 32;
    }
    if (c == 0x3c2) return 0x3a3;
    if (c == 0xff) return 0x178;
    if (c == 0xb5) return 0x39c;
    if (c >= 0x450 && c <= 0x45f) return c - 80;
    if (c >= 0x100 && c <= 0x17f && c != 0x131 && c != 0x138 && c != 0x149 && c != 0x17f) {
      bool odd_is_lower = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e);
      if (odd_is_lower ? (c % 2 == 0) : (c % 2 == 1)) return c - 1;
    }
    return c;
  }
  if ((c >= 'A' && c <= 'Z') || (c >= 0xc0 && c <= 0xde && c != 0xd7) || (c >= 0x391 && c <= 0x3ab && c != 0x3a2) ||
      (c >= 0x410 && c <= 0x42f)) {
    return c + 32;
  }
  if (c == 0x178) return 0xff;
  if (c >= 0x400 && c <= 0x40f) return c + 80;
  if (c >= 0x100 && c <= 0x17f && c != 0x130 && c != 0x138 && c != 0x149 && c != 0x178) {
    bool odd_is_lower = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17e);
    if (odd_is_lower ? (c % 2 == 1) : (c % 2 == 0)) return c + 1;
  }
  return c;
}

bool is_cased_letter(uint32_t cp);

std::string ascii_case(const std::string& s, bool upper) {
  bool ascii = std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
  if (ascii) {
    std::string out = s;
    for (char& c : out) c = static_cast<char>(map_case(static_cast<unsigned char>(c), upper));
    return out;
  }
  std::string out;
  std::vector<uint32_t> cps = utf8_decode(s);
  for (size_t i = 0; i < cps.size(); ++i) {
    uint32_t cp = cps[i];
    if (upper && cp == 0xdf) {
      out += "SS";  // Python: 'ß'.upper() == 'SS'
      continue;
    }
    if (!upper && cp == 0x3a3) {
      // Final sigma: after a cased letter and not before one.
      bool after = i > 0 && is_cased_letter(cps[i - 1]);
      bool before = i + 1 < cps.size() && is_cased_letter(cps[i + 1]);
      utf8_append(out, after && !before ? 0x3c2 : 0x3c3);
      continue;
    }
    utf8_append(out, map_case(cp, upper));
  }
  return out;
}

bool is_cased_letter(uint32_t cp) { return map_case(cp, true) != cp || map_case(cp, false) != cp || cp == 0xdf; }

std::string python_title(const std::string& s, bool capitalize_only) {
  std::string out;
  bool word_start = true;
  bool first = true;
  for (uint32_t cp : utf8_decode(s)) {
    bool letter = is_cased_letter(cp);
    bool start = capitalize_only ? first : word_start;
    utf8_append(out, map_case(cp, start && letter));
    if (capitalize_only) first = false;
    else word_start = !letter;
  }
  return out;
}

std::string jinja_title(const std::string& s) {
  // Jinja's title filter: split before runs of [-\s({\[<]; each chunk's first char upper, the rest lower.
  std::string out;
  bool chunk_start = true;
  for (uint32_t cp : utf8_decode(s)) {
    bool boundary = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || python_is_space(cp);
    if (boundary) {
      utf8_append(out, cp);
      chunk_start = true;
      continue;
    }
    utf8_append(out, map_case(cp, chunk_start));
    chunk_start = false;
  }
  return out;
}

std::string python_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  if (from.empty()) {
    std::vector<uint32_t> cps = utf8_decode(s);
    std::string out;
    int64_t done = 0;
    for (size_t i = 0; i <= cps.size(); ++i) {
      if (count < 0 || done < count) {
        out += to;
        ++done;
      }
      if (i < cps.size()) utf8_append(out, cps[i]);
    }
    return out;
  }
  std::string out;
  size_t start = 0;
  int64_t done = 0;
  while (count < 0 || done < count) {
    size_t found = s.find(from, start);
    if (found == std::string::npos) break;
    out += s.substr(start, found - start) + to;
    start = found + from.size();
    ++done;
  }
  return out + s.substr(start);
}

std::vector<Value> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::undefined: return {};
    case Value::Kind::list: return v.as_list();
    case Value::Kind::dict: {
      std::vector<Value> keys;
      for (const auto& [k, unused] : v.as_dict().items) keys.emplace_back(k);
      return keys;
    }
    case Value::Kind::string: {
      std::vector<Value> chars;
      for (uint32_t cp : utf8_decode(v.as_string())) {
        std::string c;
        utf8_append(c, cp);
        chars.emplace_back(c);
      }
      return chars;
    }
    default: fail("'" + v.type_name() + "' object is not iterable");
  }
}

int64_t python_length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::undefined: return 0;
    case Value::Kind::string: return static_cast<int64_t>(utf8_decode(v.as_string()).size());
    case Value::Kind::list: return static_cast<int64_t>(v.as_list().size());
    case Value::Kind::dict: return static_cast<int64_t>(v.as_dict().items.size());
    default: fail("object of type '" + v.type_name() + "' has no len()");
  }
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::undefined: return false;
    case Value::Kind::string:
      if (!item.is_string()) fail("'in <string>' requires string as left operand, not " + item.type_name());
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::list:
      return std::any_of(container.as_list().begin(), container.as_list().end(),
                         [&](const Value& x) { return equals(x, item); });
    case Value::Kind::dict: return item.is_string() && container.as_dict().find(item.as_string()) != nullptr;
    default: fail("argument of type '" + container.type_name() + "' is not iterable");
  }
}

Value get_attribute(const Value& obj, const std::string& name) {
  obj.require_defined();
  if (obj.is_ns()) {
    const Value* v = obj.as_dict().find(name);
    return v ? *v : Value::undefined("'Namespace' has no attribute '" + name + "'");
  }
  Value method = get_method(obj, name);
  if (!method.is_undefined()) return method;
  if (obj.is_dict()) {
    const Value* v = obj.as_dict().find(name);
    if (v) return *v;
  }
  std::string type = obj.is_none() ? "None" : "'" + obj.type_name() + " object'";
  return Value::undefined(type + " has no attribute '" + name + "'");
}

Value get_item(const Value& obj, const Value& key) {
  obj.require_defined();
  if ((obj.is_dict() || obj.is_ns()) && key.is_string()) {
    const Value* v = obj.as_dict().find(key.as_string());
    if (v) return *v;
  }
  if ((obj.is_list() || obj.is_string()) && (key.kind() == Value::Kind::integer || key.kind() == Value::Kind::boolean)) {
    int64_t n = python_length(obj);
    int64_t i = key.as_int() < 0 ? key.as_int() + n : key.as_int();
    if (i >= 0 && i < n) {
      if (obj.is_list()) return obj.as_list()[static_cast<size_t>(i)];
      std::vector<uint32_t> cps = utf8_decode(obj.as_string());
      return Value(utf8_encode(cps, static_cast<size_t>(i), static_cast<size_t>(i) + 1));
    }
    return Value::undefined("'" + obj.type_name() + " object' has no element " + std::to_string(key.as_int()));
  }
  if (key.is_string() && !obj.is_ns()) {
    Value method = get_method(obj, key.as_string());
    if (!method.is_undefined()) return method;
  }
  std::string type = obj.is_none() ? "None" : "'" + obj.type_name() + " object'";
  return Value::undefined(type + " has no attribute " + key.repr());
}

Value get_method(const Value& obj, const std::string& name) {
  auto bind = [&](auto fn) { return Value::function(name, [obj, name, fn](const CallArgs& a) { return fn(obj, name, a); }); };
  if (obj.is_string()) {
    if (name == "startswith" || name == "endswith") {
      return bind([](const Value& self, const std::string& m, const CallArgs& a) {
        const Value* p = a.get(0, "prefix");
        if (!p) fail(m + "() takes at least 1 argument");
        std::vector<Value> options = p->is_list() ? p->as_list() : std::vector<Value>{*p};
        const std::string& s = self.as_string();
        for (const Value& o : options) {
          if (!o.is_string()) fail(m + " first arg must be str or a tuple of str, not " + o.type_name());
          const std::string& x = o.as_string();
          bool hit = x.size() <= s.size() &&
                     (m == "startswith" ? s.compare(0, x.size(), x) == 0 : s.compare(s.size() - x.size(), x.size(), x) == 0);
          if (hit) return Value(true);
        }
        return Value(false);
      });
    }
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      return bind([](const Value& self, const std::string& m, const CallArgs& a) {
        return Value(python_strip(self.as_string(), a.get(0, "chars"), m != "rstrip", m != "lstrip"));
      });
    }
    if (name == "split") {
      return bind([](const Value& self, const std::string&, const CallArgs& a) {
        const Value* maxsplit = a.get(1, "maxsplit");
        ValueList parts;
        for (auto& p : python_split(self.as_string(), a.get(0, "sep"), maxsplit ? maxsplit->as_int() : -1)) parts.emplace_back(p);
        return Value::list(std::move(parts));
      });
    }
    if (name == "upper" || name == "lower") {
      return bind([](const Value& self, const std::string& m, const CallArgs&) { return Value(ascii_case(self.as_string(), m == "upper")); });
    }
    if (name == "replace") {
      return bind([](const Value& self, const std::string& m, const CallArgs& a) {
        const Value* count = a.get(2, "count");
        return Value(python_replace(self.as_string(), arg_string(a, 0, "old", m), arg_string(a, 1, "new", m), count ? count->as_int() : -1));
      });
    }
    if (name == "find" || name == "count") {
      return bind([](const Value& self, const std::string& m, const CallArgs& a) {
        std::string x = arg_string(a, 0, "sub", m);
        const std::string& s = self.as_string();
        if (m == "find") {
          size_t at = s.find(x);
          return Value(at == std::string::npos ? int64_t{-1} : static_cast<int64_t>(utf8_decode(s.substr(0, at)).size()));
        }
        if (x.empty()) return Value(python_length(self) + 1);
        int64_t n = 0;
        for (size_t at = s.find(x); at != std::string::npos; at = s.find(x, at + x.size())) ++n;
        return Value(n);
      });
    }
    if (name == "join") {
      return bind([](const Value& self, const std::string&, const CallArgs& a) {
        const Value* items = a.get(0, "iterable");
        if (!items) fail("join() takes exactly one argument");
        std::string out;
        bool first = true;
        for (const Value& v : iterate(*items)) {
          if (!v.is_string()) fail("sequence item: expected str instance, " + v.type_name() + " found");
          if (!first) out += self.as_string();
          first = false;
          out += v.as_string();
        }
        return Value(out);
      });
    }
    if (name == "title" || name == "capitalize") {
      return bind([](const Value& self, const std::string& m, const CallArgs&) {
        return Value(python_title(self.as_string(), m == "capitalize"));
      });
    }
    if (name == "isdigit" || name == "isspace" || name == "isalpha" || name == "isalnum") {
      return bind([](const Value& self, const std::string& m, const CallArgs&) {
        const std::string& s = self.as_string();
        if (s.empty()) return Value(false);
        for (unsigned char c : s) {
          bool ok = m == "isdigit" ? std::isdigit(c) : m == "isspace" ? std::isspace(c)
                  : m == "isalpha" ? std::isalpha(c) : std::isalnum(c);
          if (!ok) return Value(false);
        }
        return Value(true);
      });
    }
    return Value();
  }
  if (obj.is_dict()) {
    if (name == "items" || name == "keys" || name == "values") {
      return bind([](const Value& self, const std::string& m, const CallArgs&) {
        ValueList out;
        for (const auto& [k, v] : self.as_dict().items) {
          if (m == "items") out.push_back(Value::list({Value(k), v}, true));
          else out.push_back(m == "keys" ? Value(k) : v);
        }
        return Value::list(std::move(out));
      });
    }
    if (name == "get") {
      return bind([](const Value& self, const std::string& m, const CallArgs& a) {
        const Value* key = a.get(0, "key");
        if (!key) fail(m + "() takes at least 1 argument");
        const Value* v = key->is_string() ? self.as_dict().find(key->as_string()) : nullptr;
        if (v) return *v;
        const Value* def = a.get(1, "default");
        return def ? *def : Value::none();
      });
    }
    return Value();
  }
  if (obj.is_list() && (name == "index" || name == "count")) {
    return bind([](const Value& self, const std::string& m, const CallArgs& a) {
      const Value* x = a.get(0, "value");
      if (!x) fail(m + "() takes exactly one argument");
      int64_t n = 0;
      const ValueList& items = self.as_list();
      for (size_t i = 0; i < items.size(); ++i) {
        if (!equals(items[i], *x)) continue;
        if (m == "index") return Value(static_cast<int64_t>(i));
        ++n;
      }
      if (m == "index") fail(x->repr() + " is not in list");
      return Value(n);
    });
  }
  return Value();
}

}  // namespace troupe::jinja
