// to_json: Python's json.dumps, which transformers' `tojson` filter calls.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "text/jinja_value.hpp"

namespace troupe::jinja {
namespace {

void append_hex4(std::string& out, uint32_t unit) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "\\u%04x", unit);
  out += buf;
}

void append_json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  const std::vector<uint32_t> cps = utf8_decode(s);
  for (uint32_t cp : cps) {
    switch (cp) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (cp < 0x20) {
          append_hex4(out, cp);
        } else if (ensure_ascii && cp > 0x7f) {
          if (cp >= 0x10000) {
            uint32_t v = cp - 0x10000;
            append_hex4(out, 0xd800 | (v >> 10));
            append_hex4(out, 0xdc00 | (v & 0x3ff));
          } else {
            append_hex4(out, cp);
          }
        } else {
          utf8_append(out, cp);
        }
    }
  }
  out += '"';
}

class JsonWriter {
 public:
  explicit JsonWriter(const JsonOptions& options) : options_(options) {
    item_separator_ = options.item_separator;
    if (item_separator_.empty()) item_separator_ = options.indent >= 0 ? "," : ", ";
  }

  void write(const Value& v, int depth) {
    using K = Value::Kind;
    switch (v.kind()) {
      case K::none: out_ += "null"; return;
      case K::boolean: out_ += v.as_bool() ? "true" : "false"; return;
      case K::integer: out_ += std::to_string(v.as_int()); return;
      case K::floating: {
        double d = v.as_double();
        if (std::isnan(d)) out_ += "NaN";
        else if (std::isinf(d)) out_ += d < 0 ? "-Infinity" : "Infinity";
        else out_ += python_float_repr(d);
        return;
      }
      case K::string: append_json_string(out_, v.as_string(), options_.ensure_ascii); return;
      case K::list: {
        const auto& items = v.as_list();
        if (items.empty()) {
          out_ += "[]";
          return;
        }
        out_ += '[';
        for (size_t i = 0; i < items.size(); ++i) {
          if (i) out_ += item_separator_;
          newline(depth + 1);
          write(items[i], depth + 1);
        }
        newline(depth);
        out_ += ']';
        return;
      }
      case K::dict: {
        auto items = v.as_dict().items;
        if (items.empty()) {
          out_ += "{}";
          return;
        }
        if (options_.sort_keys) {
          std::stable_sort(items.begin(), items.end(),
                           [](const auto& a, const auto& b) { return a.first < b.first; });
        }
        out_ += '{';
        for (size_t i = 0; i < items.size(); ++i) {
          if (i) out_ += item_separator_;
          newline(depth + 1);
          append_json_string(out_, items[i].first, options_.ensure_ascii);
          out_ += options_.key_separator;
          write(items[i].second, depth + 1);
        }
        newline(depth);
        out_ += '}';
        return;
      }
      default: fail("Object of type " + v.type_name() + " is not JSON serializable");
    }
  }

  std::string take() { return std::move(out_); }

 private:
  void newline(int depth) {
    if (options_.indent < 0) return;
    out_ += '\n';
    out_.append(static_cast<size_t>(options_.indent) * depth, ' ');
  }

  const JsonOptions& options_;
  std::string item_separator_;
  std::string out_;
};

}  // namespace

std::string to_json(const Value& value, const JsonOptions& options) {
  JsonWriter writer(options);
  writer.write(value, 0);
  return writer.take();
}

}  // namespace troupe::jinja
