#pragma once
// Errors as values: runtime functions return Result<T> instead of throwing across boundaries.
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace troupe {

enum class ErrorCode {
  invalid_argument,  // bad input from a user: maps to HTTP 400 / CLI exit 2
  not_found,         // missing file, tensor, model or route
  corrupt_data,      // a file exists but its content is wrong
  unsupported,       // valid input we do not handle (yet): unknown architecture, dtype
  out_of_resources,  // KV blocks, memory
  unavailable,       // no replica ready, peer gone
  timeout,
  internal,
};

struct Error {
  ErrorCode code = ErrorCode::internal;
  std::string message;
  std::string param;  // the request field at fault, for invalid_argument from a request check
};

inline Error make_error(ErrorCode code, std::string message) { return Error{code, std::move(message), {}}; }

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}
  Result(Error error) : data_(std::move(error)) {}

  bool ok() const { return data_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(data_); }
  const T& value() const& { return std::get<0>(data_); }
  T&& value() && { return std::get<0>(std::move(data_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  const Error& error() const { return std::get<1>(data_); }

 private:
  std::variant<T, Error> data_;
};

// Result<void>: success or an error.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)) {}
  static Status success() { return Status(); }
  bool ok() const { return !error_.has_value(); }
  explicit operator bool() const { return ok(); }
  const Error& error() const { return *error_; }

 private:
  std::optional<Error> error_;
};

}  // namespace troupe

// Propagate an error from an expression returning Status or Result<T>.
#define TROUPE_TRY(expr)                              \
  do {                                                \
    auto troupe_try_result_ = (expr);                 \
    if (!troupe_try_result_.ok()) return troupe_try_result_.error(); \
  } while (0)
