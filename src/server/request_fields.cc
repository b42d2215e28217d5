#include "server/request_fields.h"

#include <cmath>

#include "server/api_error.h"

namespace magnetar::server {
namespace {

const Json* field(const Json& request, const char* name) {
  auto it = request.find(name);
  if (it == request.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string range_text(double min, double max) {
  auto text = [](double v) {
    std::string s = nlohmann::json(v).dump();
    if (s.ends_with(".0")) s.resize(s.size() - 2);
    return s;
  };
  return "[" + text(min) + ", " + text(max) + "]";
}

}  // namespace

Json parse_request_body(const std::string& body) {
  Json request;
  try {
    request = Json::parse(body);
  } catch (const nlohmann::json::parse_error& e) {
    throw bad_request(std::string("the request body is not valid JSON: ") + e.what());
  }
  if (!request.is_object()) throw bad_request("the request body must be a JSON object");
  return request;
}

std::optional<bool> bool_field(const Json& request, const char* name) {
  const Json* v = field(request, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_boolean()) throw bad_request(std::string(name) + " must be a boolean", name);
  return v->get<bool>();
}

std::optional<std::string> string_field(const Json& request, const char* name) {
  const Json* v = field(request, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) throw bad_request(std::string(name) + " must be a string", name);
  return v->get<std::string>();
}

std::optional<double> number_field(const Json& request, const char* name, double min, double max) {
  const Json* v = field(request, name);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) throw bad_request(std::string(name) + " must be a number", name);
  double d = v->get<double>();
  if (!std::isfinite(d) || d < min || d > max) {
    throw bad_request(std::string(name) + " must be in " + range_text(min, max), name);
  }
  return d;
}

std::optional<int64_t> int_field(const Json& request, const char* name, int64_t min, int64_t max) {
  const Json* v = field(request, name);
  if (v == nullptr) return std::nullopt;
  int64_t n = 0;
  if (v->is_number_integer()) {
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      n = INT64_MAX;
    } else {
      n = v->get<int64_t>();
    }
  } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
             std::trunc(v->get<double>()) == v->get<double>() &&
             std::fabs(v->get<double>()) < 9.0e18) {
    n = static_cast<int64_t>(v->get<double>());
  } else {
    throw bad_request(std::string(name) + " must be an integer", name);
  }
  if (n < min || n > max) {
    throw bad_request(std::string(name) + " must be in " +
                          range_text(static_cast<double>(min), static_cast<double>(max)),
                      name);
  }
  return n;
}

std::vector<std::string> stop_strings_field(const Json& request, const char* name,
                                            size_t max_count) {
  const Json* v = field(request, name);
  std::vector<std::string> out;
  if (v == nullptr) return out;
  auto add = [&](const Json& s) {
    if (!s.is_string()) {
      throw bad_request(std::string(name) + " must be a string or an array of strings", name);
    }
    if (!s.get_ref<const std::string&>().empty()) out.push_back(s.get<std::string>());
  };
  if (v->is_array()) {
    for (const Json& s : *v) add(s);
  } else {
    add(*v);
  }
  if (out.size() > max_count) {
    throw bad_request(
        std::string(name) + " may hold at most " + std::to_string(max_count) + " strings", name);
  }
  return out;
}

void refuse_unsupported(const Json& request, const char* name, const std::vector<Json>& neutral,
                        const std::string& why) {
  auto it = request.find(name);
  if (it == request.end()) return;
  for (const Json& n : neutral) {
    if (*it == n) return;
  }
  throw bad_request(std::string(name) + " is not supported: " + why, name);
}

}  // namespace magnetar::server
