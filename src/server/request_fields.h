// Typed access to the fields of a client's JSON request. Every reader returns nullopt for an
// absent or null field and throws a 400 ApiError naming the field for a value of the wrong type
// or out of range, so that a request is either understood exactly or refused with a reason (ds4
// silently clamps, coerces or drops such values: server-api.md §4).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace magnetar::server {

using Json = nlohmann::ordered_json;

// The request body parsed as strict JSON; a body that is not a JSON object is a 400.
Json parse_request_body(const std::string& body);

std::optional<bool> bool_field(const Json& request, const char* name);
std::optional<std::string> string_field(const Json& request, const char* name);
// A JSON number within [min, max] (finite).
std::optional<double> number_field(const Json& request, const char* name, double min, double max);
// A JSON integer within [min, max]; a float with an integral value (e.g. 256.0) is accepted.
std::optional<int64_t> int_field(const Json& request, const char* name, int64_t min, int64_t max);
// A string or an array of strings (empty strings dropped); at most `max_count` of them.
std::vector<std::string> stop_strings_field(const Json& request, const char* name,
                                            size_t max_count);

// Refuses a field that asks for something the server does not do: present and not equal to any
// of `neutral` (the values that mean "off", e.g. false, 0, 1, null).
void refuse_unsupported(const Json& request, const char* name, const std::vector<Json>& neutral,
                        const std::string& why);

}  // namespace magnetar::server
