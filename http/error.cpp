#include "http/error.hpp"

#include <nlohmann/json.hpp>

namespace troupe::http {

int http_status_of(ErrorCode code) {
  switch (code) {
    case ErrorCode::invalid_argument: return 400;
    case ErrorCode::not_found: return 404;
    case ErrorCode::unsupported: return 400;
    case ErrorCode::out_of_resources: return 503;
    case ErrorCode::unavailable: return 503;
    case ErrorCode::timeout: return 504;
    case ErrorCode::corrupt_data: return 500;
    case ErrorCode::internal: return 500;
  }
  return 500;
}

ApiError not_ready() { return ApiError{503, "the engine is not ready yet; retry shortly", ""}; }

ApiError shutting_down() { return ApiError{503, "the server is shutting down; retry on another replica", ""}; }

ApiError api_error_of(const Error& error, std::string param) {
  if (param.empty()) param = error.param;
  return ApiError{http_status_of(error.code), error.message, std::move(param)};
}

const char* error_type_of(int status) {
  switch (status) {
    case 400: return "BadRequestError";
    case 401: return "AuthenticationError";
    case 404: return "NotFoundError";
    case 405: return "MethodNotAllowedError";
    case 413: return "RequestTooLargeError";
    case 429: return "RateLimitError";
    case 503: return "ServiceUnavailableError";
    case 504: return "TimeoutError";
    default: return status >= 500 ? "InternalServerError" : "BadRequestError";
  }
}

std::string error_body(const ApiError& error) {
  nlohmann::json param = error.param.empty() ? nlohmann::json(nullptr) : nlohmann::json(error.param);
  nlohmann::json body{{"error",
                       {{"message", error.message},
                        {"type", error_type_of(error.status)},
                        {"param", param},
                        {"code", error.status}}}};
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace troupe::http
