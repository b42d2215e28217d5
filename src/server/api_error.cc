#include "server/api_error.h"

#include "server/json_text.h"

namespace magnetar::server {

std::string error_type(ApiFlavor flavor, int status) {
  const bool anthropic = flavor == ApiFlavor::kAnthropic;
  switch (status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return anthropic ? "request_too_large" : "invalid_request_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return anthropic ? "overloaded_error" : "service_unavailable_error";
    default:
      if (status >= 500) return anthropic ? "api_error" : "server_error";
      return "invalid_request_error";
  }
}

std::string error_body(ApiFlavor flavor, const ApiError& error) {
  nlohmann::ordered_json inner;
  if (flavor == ApiFlavor::kAnthropic) {
    inner["type"] = error_type(flavor, error.status());
    inner["message"] = error.what();
    for (const auto& [key, value] : error.extra().items()) inner[key] = value;
    nlohmann::ordered_json body;
    body["type"] = "error";
    body["error"] = std::move(inner);
    return json_text(body);
  }
  inner["message"] = error.what();
  inner["type"] = error_type(flavor, error.status());
  inner["param"] =
      error.param().empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(error.param());
  inner["code"] =
      error.code().empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(error.code());
  for (const auto& [key, value] : error.extra().items()) inner[key] = value;
  nlohmann::ordered_json body;
  body["error"] = std::move(inner);
  return json_text(body);
}

nlohmann::ordered_json stream_error_object(ApiFlavor flavor, const std::string& message) {
  if (flavor == ApiFlavor::kAnthropic) {
    return {{"type", "error"}, {"error", {{"type", "api_error"}, {"message", message}}}};
  }
  return {
      {"error",
       {{"message", message}, {"type", "server_error"}, {"param", nullptr}, {"code", nullptr}}}};
}

}  // namespace magnetar::server
