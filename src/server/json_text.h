// JSON text for the wire. Generated text is byte-level and may hold bytes that are not valid
// UTF-8 (a random model, a character cut by max_tokens); nlohmann's dump() throws on them, so
// every body and event is written through here, which replaces such bytes with U+FFFD.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace magnetar::server {

inline std::string json_text(const nlohmann::ordered_json& value) {
  return value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace magnetar::server
