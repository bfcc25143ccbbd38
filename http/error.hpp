#pragma once
// OpenAI error shape {"error":{"message","type","param","code"}} and the one place that maps
// troupe's ErrorCode to an HTTP status.
#include <string>

#include "runtime/result.hpp"

namespace troupe::http {

struct ApiError {
  int status = 500;
  std::string message;
  std::string param;  // "" -> null
};

int http_status_of(ErrorCode code);
// `param` "": the error's own (Error::param).
ApiError api_error_of(const Error& error, std::string param = "");
// The 503s every generation route answers.
ApiError not_ready();      // the engine is still loading
ApiError shutting_down();  // the server drains (SIGTERM)
// "BadRequestError", "NotFoundError", ... by status.
const char* error_type_of(int status);
// The JSON body, already serialized.
std::string error_body(const ApiError& error);

}  // namespace troupe::http
