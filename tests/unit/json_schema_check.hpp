#pragma once
// Test-side JSON Schema validator for the keywords grammar/json_schema_compiler supports: an
// independent check that constrained outputs really satisfy their schema.
#include <cmath>
#include <regex>
#include <string>

#include <nlohmann/json.hpp>

namespace troupe::testing {

class JsonSchemaCheck {
 public:
  explicit JsonSchemaCheck(nlohmann::json root) : root_(std::move(root)) {}

  // "" when `v` validates, else why (with the path).
  std::string check(const nlohmann::json& v) const { return check(v, root_, "$"); }

 private:
  static size_t num_chars(const std::string& s) {
    size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
  }

  std::string check(const nlohmann::json& v, const nlohmann::json& s, const std::string& at) const {
    using nlohmann::json;
    if (s.is_boolean()) return s.get<bool>() ? "" : at + ": schema false";
    if (s.contains("$ref")) {
      const std::string target = s["$ref"].get<std::string>().substr(1);
      return check(v, root_.at(json::json_pointer(target)), at);
    }
    if (s.contains("allOf"))
      for (const auto& sub : s["allOf"])
        if (auto e = check(v, sub, at); !e.empty()) return e;
    if (s.value("nullable", false) && v.is_null()) return "";
    if (s.contains("enum")) {
      for (const auto& x : s["enum"])
        if (x == v) return "";
      return at + ": not in enum";
    }
    if (s.contains("const") && s["const"] != v) return at + ": not the const";
    for (const char* key : {"anyOf", "oneOf"}) {
      if (!s.contains(key)) continue;
      int ok = 0;
      for (const auto& sub : s[key]) ok += check(v, sub, at).empty();
      if (ok == 0) return at + ": no " + key + " branch matches";
      if (std::string(key) == "oneOf" && ok > 1) return at + ": several oneOf branches match";
    }
    if (s.contains("type")) {
      std::vector<std::string> types;
      if (s["type"].is_string()) types.push_back(s["type"]);
      else for (const auto& t : s["type"]) types.push_back(t);
      bool any = false;
      for (const auto& t : types) any |= has_type(v, t);
      if (!any) return at + ": wrong type for " + v.dump();
    }
    if (v.is_string()) {
      const std::string str = v.get<std::string>();
      if (s.contains("minLength") && num_chars(str) < s["minLength"].get<size_t>()) return at + ": too short";
      if (s.contains("maxLength") && num_chars(str) > s["maxLength"].get<size_t>()) return at + ": too long";
      if (s.contains("pattern") && !std::regex_match(str, std::regex(s["pattern"].get<std::string>())))
        return at + ": does not match the pattern";
    }
    if (v.is_number()) {
      const double x = v.get<double>();
      if (s.contains("minimum") && x < s["minimum"].get<double>()) return at + ": below minimum";
      if (s.contains("maximum") && x > s["maximum"].get<double>()) return at + ": above maximum";
      if (s.contains("exclusiveMinimum") && x <= s["exclusiveMinimum"].get<double>()) return at + ": not above exclusiveMinimum";
      if (s.contains("exclusiveMaximum") && x >= s["exclusiveMaximum"].get<double>()) return at + ": not below exclusiveMaximum";
    }
    if (v.is_array()) {
      if (s.contains("minItems") && v.size() < s["minItems"].get<size_t>()) return at + ": too few items";
      if (s.contains("maxItems") && v.size() > s["maxItems"].get<size_t>()) return at + ": too many items";
      size_t first = 0;
      if (s.contains("prefixItems")) {
        for (; first < s["prefixItems"].size() && first < v.size(); ++first)
          if (auto e = check(v[first], s["prefixItems"][first], at + "[" + std::to_string(first) + "]"); !e.empty()) return e;
      }
      if (s.contains("items"))
        for (size_t i = first; i < v.size(); ++i)
          if (auto e = check(v[i], s["items"], at + "[" + std::to_string(i) + "]"); !e.empty()) return e;
    }
    if (v.is_object()) {
      if (s.contains("required"))
        for (const auto& r : s["required"])
          if (!v.contains(r.get<std::string>())) return at + ": missing " + r.get<std::string>();
      for (const auto& [k, x] : v.items()) {
        if (s.contains("properties") && s["properties"].contains(k)) {
          if (auto e = check(x, s["properties"][k], at + "." + k); !e.empty()) return e;
        } else if (s.contains("additionalProperties")) {
          if (auto e = check(x, s["additionalProperties"], at + "." + k); !e.empty()) return e;
        }
      }
    }
    return "";
  }

  static bool has_type(const nlohmann::json& v, const std::string& t) {
    if (t == "string") return v.is_string();
    if (t == "integer") return v.is_number_integer() || (v.is_number_float() && v.get<double>() == std::floor(v.get<double>()));
    if (t == "number") return v.is_number();
    if (t == "boolean") return v.is_boolean();
    if (t == "null") return v.is_null();
    if (t == "array") return v.is_array();
    if (t == "object") return v.is_object();
    return false;
  }

  nlohmann::json root_;
};

}  // namespace troupe::testing
