#pragma once
// Typed access to one JSON object of a model folder's config files; errors name the source file
// and the field. A null value reads as absent (Hugging Face writes `"head_dim": null`). Internal to
// the config parsers (runtime/model_config*.cpp).
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/result.hpp"

namespace troupe::detail {

using json = nlohmann::json;

class FieldReader {
 public:
  FieldReader(const json& object, std::string source, std::string prefix = "")
      : object_(object), source_(std::move(source)), prefix_(std::move(prefix)) {}

  const json* find(const char* key) const {
    auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }
  bool has(const char* key) const { return find(key) != nullptr; }

  Error error(const char* key, const std::string& what) const {
    return make_error(ErrorCode::corrupt_data, source_ + ": field '" + prefix_ + key + "' " + what);
  }
  // A well-formed value troupe does not serve (another scoring function, a quant method).
  Error unsupported(const char* key, const std::string& what) const {
    return make_error(ErrorCode::unsupported, source_ + ": field '" + prefix_ + key + "' " + what);
  }
  const std::string& source() const { return source_; }
  // The reader of object field `key` (nullptr when absent); an error when it is not an object.
  Result<const json*> find_object(const char* key) const {
    const json* value = find(key);
    if (value && !value->is_object()) return error(key, "must be an object or null, got " + value->dump());
    return value;
  }

  // Integer field (an integral float such as 4096.0 is accepted); `required` or keeps *out.
  Status read_int(const char* key, int64_t* out, bool required = false) const {
    const json* value = find(key);
    if (!value) return required ? Status(error(key, "is missing")) : Status::success();
    if (value->is_number_integer()) {
      *out = value->get<int64_t>();
    } else if (value->is_number_float() && std::nearbyint(value->get<double>()) == value->get<double>()) {
      const double d = value->get<double>();  // outside int64's range the cast is undefined (fuzz_model_config)
      if (!(d >= -0x1p63 && d < 0x1p63)) return error(key, "is out of range for an integer, got " + value->dump());
      *out = int64_t(d);
    } else {
      return error(key, "must be an integer, got " + value->dump());
    }
    return Status::success();
  }
  Status read_double(const char* key, double* out, bool required = false) const {
    const json* value = find(key);
    if (!value) return required ? Status(error(key, "is missing")) : Status::success();
    if (!value->is_number()) return error(key, "must be a number, got " + value->dump());
    *out = value->get<double>();
    return Status::success();
  }
  Status read_bool(const char* key, bool* out) const {
    const json* value = find(key);
    if (!value) return Status::success();
    if (!value->is_boolean()) return error(key, "must be true or false, got " + value->dump());
    *out = value->get<bool>();
    return Status::success();
  }
  Status read_string(const char* key, std::string* out) const {
    const json* value = find(key);
    if (!value) return Status::success();
    if (!value->is_string()) return error(key, "must be a string, got " + value->dump());
    *out = value->get<std::string>();
    return Status::success();
  }
  // An int or a list of ints (eos_token_id); true in *found when present.
  Status read_int_list(const char* key, std::vector<int64_t>* out, bool* found) const {
    const json* value = find(key);
    *found = value != nullptr;
    if (!value) return Status::success();
    std::vector<int64_t> ids;
    if (value->is_number_integer()) {
      ids.push_back(value->get<int64_t>());
    } else if (value->is_array()) {
      for (const json& item : *value) {
        if (!item.is_number_integer()) return error(key, "must be an integer or a list of integers");
        ids.push_back(item.get<int64_t>());
      }
    } else {
      return error(key, "must be an integer or a list of integers, got " + value->dump());
    }
    *out = std::move(ids);
    return Status::success();
  }

 private:
  const json& object_;
  std::string source_;
  std::string prefix_;
};

}  // namespace troupe::detail
