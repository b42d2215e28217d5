// JSON read and written the way DeepSeek's reference encoder does it with Python's standard
// `json` module (official-encoding.md §2.8), so that tool schemas, response formats and tool-call
// arguments re-serialise to the exact bytes the model was trained on.
//
// Values are nlohmann::ordered_json: member order is the client's, and a duplicate key keeps its
// first position with the last value. Integers outside the 64-bit range are held as doubles (and
// then written as floats), where Python would keep every digit — the one known difference.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace magnetar::chat {

// Parses `text` as Python's json.loads: strict JSON plus the constants NaN, Infinity and
// -Infinity; surrounding JSON whitespace allowed; a byte-order mark, raw control characters in
// strings, lone surrogate escapes and anything else Python refuses give nullopt.
std::optional<nlohmann::ordered_json> parse_python_json(std::string_view text);

// Writes `value` as json.dumps(value, ensure_ascii=False): ", " and ": " separators, non-ASCII
// characters literal, floats in Python's repr (1.0, 1e-05, 1e+16, NaN, Infinity).
std::string dump_python_json(const nlohmann::ordered_json& value);

// Appends `text` as a JSON string literal (quotes included) with the escapes of dump_python_json.
void append_python_json_string(std::string& out, std::string_view text);

// Python truthiness of a JSON value: null, false, 0, "", [] and {} are false.
bool json_truthy(const nlohmann::ordered_json& value);

}  // namespace magnetar::chat
