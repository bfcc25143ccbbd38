#include "grammar/json_schema_compiler.hpp"

#include <cmath>
#include <map>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "grammar/json_terminals.hpp"
#include "grammar/regex_parser.hpp"

namespace troupe::grammar {
namespace {

using json = nlohmann::ordered_json;

const std::set<std::string>& annotations() {
  static const std::set<std::string> k{"title", "description", "default", "examples", "$schema", "$id",
                                       "$comment", "deprecated", "readOnly", "writeOnly", "$defs",
                                       "definitions", "strict", "name", "discriminator"};
  return k;
}

const std::set<std::string>& supported() {
  static const std::set<std::string> k{
      "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems",
      "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "minLength", "maxLength", "pattern",
      "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "nullable"};
  return k;
}

class SchemaCompiler {
 public:
  SchemaCompiler(const json& root, const JsonGrammarOptions& options) : root_(root), terms_(options) {}

  ExprPtr value(const json& s, const std::string& path) {
    if (!error_.empty()) return never();
    // NOTE: $refs expand in place, so a chain of definitions each using the next twice doubles per
    // link; a budget of subschemas keeps a hostile schema from building an exponential tree.
    if (++num_subschemas_ > kMaxSubschemas)
      return fail("", "too large: over " + std::to_string(kMaxSubschemas) + " subschemas once $refs are expanded");
    if (s.is_boolean()) return s.get<bool>() ? terms_.any_value(terms_.options().max_depth) : never();
    if (!s.is_object()) return fail(path, "a schema must be an object or a boolean");
    for (const auto& [key, _] : s.items())
      if (!supported().count(key) && !annotations().count(key))
        return fail(path, "unsupported keyword '" + key + "'");
    if (s.contains("$ref")) return ref(s, path);
    if (s.contains("allOf")) {
      const json& all = s["allOf"];
      if (!all.is_array() || all.size() != 1)
        return fail(path + "/allOf", "only an allOf of exactly one schema is supported");
      return value(all[0], path + "/allOf/0");
    }
    ExprPtr e = value_core(s, path);
    if (s.value("nullable", false)) e = alt({e, literal("null")});
    return e;
  }

  const std::string& error() const { return error_; }
  JsonTerminals& terms() { return terms_; }

 private:
  ExprPtr fail(const std::string& path, const std::string& why) {
    if (error_.empty()) error_ = (path.empty() ? std::string("schema") : "schema at " + path) + ": " + why;
    return never();
  }

  ExprPtr ref(const json& s, const std::string& path) {
    if (!s["$ref"].is_string()) return fail(path, "$ref must be a string");
    const std::string target = s["$ref"].get<std::string>();
    if (target.rfind("#", 0) != 0) return fail(path, "only local $ref (\"#...\") is supported, not '" + target + "'");
    const json* node = &root_;
    try {
      const std::string pointer = target.substr(1);
      node = &root_.at(json::json_pointer(pointer));
    } catch (const std::exception&) {
      return fail(path, "$ref '" + target + "' points nowhere");
    }
    int& depth = ref_depth_[target];
    if (depth >= terms_.options().max_depth) return never();  // recursion unrolled this deep: stop here
    ++depth;
    ExprPtr e = value(*node, target);
    --depth;
    return e;
  }

  ExprPtr value_core(const json& s, const std::string& path) {
    if (s.contains("enum")) {
      if (!s["enum"].is_array() || s["enum"].empty()) return fail(path + "/enum", "enum must be a non-empty array");
      std::vector<ExprPtr> options;
      for (const auto& v : s["enum"]) options.push_back(literal(v.dump()));
      return alt(std::move(options));
    }
    if (s.contains("const")) return literal(s["const"].dump());
    if (s.contains("anyOf") || s.contains("oneOf")) {
      const char* key = s.contains("anyOf") ? "anyOf" : "oneOf";
      const json& list = s[key];
      if (!list.is_array() || list.empty()) return fail(path + "/" + key, std::string(key) + " must be a non-empty array");
      std::vector<ExprPtr> branches;
      for (size_t i = 0; i < list.size(); ++i) branches.push_back(value(list[i], path + "/" + key + "/" + std::to_string(i)));
      return alt(std::move(branches));
    }
    std::vector<std::string> types;
    if (s.contains("type")) {
      const json& t = s["type"];
      if (t.is_string()) {
        types.push_back(t.get<std::string>());
      } else if (t.is_array()) {
        for (const auto& x : t) {
          if (!x.is_string()) return fail(path + "/type", "type must be a string or an array of strings");
          types.push_back(x.get<std::string>());
        }
      } else {
        return fail(path + "/type", "type must be a string or an array of strings");
      }
    } else if (s.contains("properties") || s.contains("additionalProperties") || s.contains("required")) {
      types.push_back("object");
    } else if (s.contains("items") || s.contains("prefixItems")) {
      types.push_back("array");
    } else {
      return terms_.any_value(terms_.options().max_depth);
    }
    std::vector<ExprPtr> branches;
    for (const auto& t : types) branches.push_back(typed(t, s, path));
    return alt(std::move(branches));
  }

  ExprPtr typed(const std::string& type, const json& s, const std::string& path) {
    if (type == "string") return string(s, path);
    if (type == "integer" || type == "number") {
      auto e = terms_.number(type == "integer", s, path);
      if (!e.ok()) return fail(path, e.error().message);
      return e.value();
    }
    if (type == "boolean") return alt({literal("true"), literal("false")});
    if (type == "null") return literal("null");
    if (type == "array") return array(s, path);
    if (type == "object") return object(s, path);
    return fail(path + "/type", "unknown type '" + type + "'");
  }

  ExprPtr string(const json& s, const std::string& path) {
    std::optional<int64_t> min_len, max_len;
    if (s.contains("minLength")) {
      if (!s["minLength"].is_number_unsigned()) return fail(path + "/minLength", "minLength must be a non-negative integer");
      min_len = s["minLength"].get<int64_t>();
    }
    if (s.contains("maxLength")) {
      if (!s["maxLength"].is_number_unsigned()) return fail(path + "/maxLength", "maxLength must be a non-negative integer");
      max_len = s["maxLength"].get<int64_t>();
    }
    if ((min_len && *min_len > 10000) || (max_len && *max_len > 10000))
      return fail(path, "minLength/maxLength over 10000 are not supported");
    if (s.contains("pattern") || s.contains("format")) {
      if (min_len || max_len) return fail(path, "minLength/maxLength together with pattern or format are not supported");
      std::string pattern;
      if (s.contains("pattern")) {
        if (!s["pattern"].is_string()) return fail(path + "/pattern", "pattern must be a string");
        pattern = s["pattern"].get<std::string>();
      } else {
        if (!s["format"].is_string()) return fail(path + "/format", "format must be a string");
        auto p = format_pattern(s["format"].get<std::string>());
        if (!p) return fail(path + "/format", "unsupported format '" + s["format"].get<std::string>() + "'");
        pattern = *p;
      }
      auto inner = parse_regex(pattern);
      if (!inner.ok()) return fail(path + "/pattern", inner.error().message);
      return seq({literal("\""), json_escaped(inner.value()), literal("\"")});
    }
    return terms_.string(min_len.value_or(0), max_len.value_or(-1));
  }

  static std::optional<std::string> format_pattern(const std::string& format) {
    static const std::map<std::string, std::string> k{
        {"date", "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"},
        {"time", "([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"},
        {"date-time",
         "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,6})?"
         "(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"},
        {"uuid", "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"},
        {"email", "[a-zA-Z0-9._%+-]{1,64}@[a-zA-Z0-9-]{1,63}(\\.[a-zA-Z0-9-]{1,63}){1,4}"},
        {"ipv4", "((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"},
        {"uri", "[a-zA-Z][a-zA-Z0-9+.-]{0,15}://[a-zA-Z0-9._~:/?#@!$&'()*+,;=%-]{1,200}"},
    };
    auto it = k.find(format);
    if (it == k.end()) return std::nullopt;
    return it->second;
  }

  ExprPtr array(const json& s, const std::string& path) {
    int64_t min_items = 0, max_items = -1;
    if (s.contains("minItems")) {
      if (!s["minItems"].is_number_unsigned()) return fail(path + "/minItems", "minItems must be a non-negative integer");
      min_items = s["minItems"].get<int64_t>();
    }
    if (s.contains("maxItems")) {
      if (!s["maxItems"].is_number_unsigned()) return fail(path + "/maxItems", "maxItems must be a non-negative integer");
      max_items = s["maxItems"].get<int64_t>();
    }
    if (min_items > 1000 || max_items > 1000) return fail(path, "minItems/maxItems over 1000 are not supported");
    std::vector<ExprPtr> prefix;
    if (s.contains("prefixItems")) {
      if (!s["prefixItems"].is_array()) return fail(path + "/prefixItems", "prefixItems must be an array");
      for (size_t i = 0; i < s["prefixItems"].size(); ++i)
        prefix.push_back(value(s["prefixItems"][i], path + "/prefixItems/" + std::to_string(i)));
    }
    if (s.contains("items") && s["items"].is_array())
      return fail(path + "/items", "items as an array (use prefixItems) is not supported");
    ExprPtr item = s.contains("items") ? value(s["items"], path + "/items")
                                       : terms_.any_value(terms_.options().max_depth - 1);
    if (max_items >= 0 && max_items < min_items) return fail(path, "minItems is larger than maxItems");
    const ExprPtr sep = seq({terms_.ws(), literal(","), terms_.ws()});
    const int64_t n_prefix = int64_t(prefix.size());
    auto elem = [&](int64_t k) { return k < n_prefix ? prefix[k] : item; };
    // tail(k): what may follow once k >= 1 items are written.
    ExprPtr tail = repeat(seq({sep, item}), std::max<int64_t>(0, min_items - std::max<int64_t>(n_prefix, 1)),
                          max_items < 0 ? -1 : std::max<int64_t>(0, max_items - std::max<int64_t>(n_prefix, 1)));
    for (int64_t k = n_prefix - 1; k >= 1; --k) {
      ExprPtr next = (max_items < 0 || k < max_items) ? seq({sep, elem(k), tail}) : never();
      tail = alt({k >= min_items ? empty() : never(), next});
    }
    ExprPtr body = empty();
    if (max_items != 0) {
      ExprPtr first = seq({elem(0), tail});
      body = min_items == 0 ? opt(first) : first;
    }
    return seq({literal("["), terms_.ws(), body, terms_.ws(), literal("]")});
  }

  ExprPtr object(const json& s, const std::string& path) {
    std::vector<std::string> names;
    std::map<std::string, const json*> props;
    static const json kAny = true;
    if (s.contains("properties")) {
      if (!s["properties"].is_object()) return fail(path + "/properties", "properties must be an object");
      for (const auto& [k, v] : s["properties"].items()) {
        names.push_back(k);
        props[k] = &v;
      }
    }
    std::set<std::string> required;
    if (s.contains("required")) {
      if (!s["required"].is_array()) return fail(path + "/required", "required must be an array of names");
      for (const auto& r : s["required"]) {
        if (!r.is_string()) return fail(path + "/required", "required must be an array of names");
        const std::string name = r.get<std::string>();
        required.insert(name);
        if (!props.count(name)) {
          names.push_back(name);
          props[name] = &kAny;
        }
      }
    }
    const ExprPtr colon = seq({terms_.ws(), literal(":"), terms_.ws()});
    const ExprPtr sep = seq({terms_.ws(), literal(","), terms_.ws()});
    const json* additional = s.contains("additionalProperties") ? &s["additionalProperties"] : nullptr;
    if (additional && !additional->is_boolean() && !additional->is_object())
      return fail(path + "/additionalProperties", "additionalProperties must be a boolean or a schema");
    ExprPtr body;
    if (names.empty()) {
      if (additional && additional->is_boolean() && !additional->get<bool>()) {
        body = empty();
      } else {
        ExprPtr v = additional && additional->is_object() ? value(*additional, path + "/additionalProperties")
                                                          : terms_.any_value(terms_.options().max_depth - 1);
        ExprPtr kv = seq({terms_.string(0, -1), colon, v});
        body = opt(seq({kv, star(seq({sep, kv}))}));
      }
    } else {
      // NOTE: extra properties beside the listed ones are never generated (always valid output).
      std::vector<ExprPtr> members;
      std::vector<bool> is_required;
      for (const auto& name : names) {
        ExprPtr v = value(*props[name], path + "/properties/" + name);
        members.push_back(seq({literal(json(name).dump()), colon, v}));
        is_required.push_back(required.count(name) > 0);
      }
      body = object_body(std::move(members), std::move(is_required), sep);
      if (is_never(body)) return fail(path, "no value satisfies a required property");
    }
    return seq({literal("{"), terms_.ws(), body, terms_.ws(), literal("}")});
  }

  static constexpr int64_t kMaxSubschemas = 20000;
  const json& root_;
  JsonTerminals terms_;
  int64_t num_subschemas_ = 0;
  std::map<std::string, int> ref_depth_;
  std::string error_;
};

}  // namespace

Result<ExprPtr> compile_json_schema(const std::string& schema_text, const JsonGrammarOptions& options) {
  json root = json::parse(schema_text, nullptr, false);
  if (root.is_discarded()) return make_error(ErrorCode::invalid_argument, "the schema is not valid JSON");
  SchemaCompiler compiler(root, options);
  ExprPtr e = compiler.value(root, "");
  if (!compiler.error().empty()) return make_error(ErrorCode::invalid_argument, compiler.error());
  if (is_never(e)) return make_error(ErrorCode::invalid_argument, "schema: no JSON value satisfies it");
  return e;
}

ExprPtr any_json_object(const JsonGrammarOptions& options) {
  JsonTerminals terms(options);
  return terms.any_object(options.max_depth);
}

Result<ExprPtr> compile_choice(const std::string& choices_json_array) {
  json list = json::parse(choices_json_array, nullptr, false);
  if (list.is_discarded() || !list.is_array() || list.empty())
    return make_error(ErrorCode::invalid_argument, "choice: a non-empty array of strings is required");
  std::vector<ExprPtr> options;
  for (const auto& c : list) {
    if (!c.is_string()) return make_error(ErrorCode::invalid_argument, "choice: every choice must be a string");
    options.push_back(literal(c.get<std::string>()));
  }
  return alt(std::move(options));
}

}  // namespace troupe::grammar
