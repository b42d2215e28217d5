// Errors the server answers with, in the body shape of the API the client called.
//
// OpenAI-style endpoints answer {"error": {"message", "type", "param", "code"}} (extra members,
// such as the context-length figures, go inside "error"); Anthropic endpoints answer
// {"type": "error", "error": {"type", "message"}}. Unlike ds4 (server-api.md §12, §19), every
// status has its own type, and Anthropic endpoints use Anthropic's shape for every error.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace magnetar::server {

// Which error body shape an endpoint uses.
enum class ApiFlavor { kOpenAI, kAnthropic };

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string code = "", std::string param = "")
      : std::runtime_error(message),
        status_(status),
        code_(std::move(code)),
        param_(std::move(param)) {}

  int status() const { return status_; }
  const std::string& code() const { return code_; }
  const std::string& param() const { return param_; }
  // Members added to the OpenAI "error" object (and to Anthropic's, where a client may read them).
  nlohmann::ordered_json& extra() { return extra_; }
  const nlohmann::ordered_json& extra() const { return extra_; }

 private:
  int status_;
  std::string code_;
  std::string param_;
  nlohmann::ordered_json extra_ = nlohmann::ordered_json::object();
};

// 400 invalid_request_error naming the offending field.
inline ApiError bad_request(const std::string& message, const std::string& param = "") {
  return ApiError(400, message, "", param);
}

// The error type string for a status: OpenAI's for kOpenAI ("invalid_request_error",
// "authentication_error", "not_found_error", "rate_limit_error", "server_error", ...) and
// Anthropic's for kAnthropic ("invalid_request_error", "authentication_error", "not_found_error",
// "request_too_large", "rate_limit_error", "api_error", "overloaded_error").
std::string error_type(ApiFlavor flavor, int status);

// The JSON body (no trailing newline).
std::string error_body(ApiFlavor flavor, const ApiError& error);

// The body of an error event on an already started stream (the HTTP status is 200 by then).
nlohmann::ordered_json stream_error_object(ApiFlavor flavor, const std::string& message);

}  // namespace magnetar::server
