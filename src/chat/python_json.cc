#include "chat/python_json.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace magnetar::chat {
namespace {

using Json = nlohmann::ordered_json;

// A recursive-descent reader over the whole text; every method returns false where Python's
// decoder would raise.
class Reader {
 public:
  explicit Reader(std::string_view text) : text_(text) {}

  bool read_document(Json& out) {
    skip_ws();
    if (!read_value(out, 0)) return false;
    skip_ws();
    return pos_ == text_.size();
  }

 private:
  // Deep nesting is refused rather than allowed to exhaust the stack (Python raises
  // RecursionError at about this depth too).
  static constexpr int kMaxDepth = 900;

  void skip_ws() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool consume(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  bool read_value(Json& out, int depth) {
    if (pos_ >= text_.size() || depth > kMaxDepth) return false;
    char c = text_[pos_];
    if (c == '{') return read_object(out, depth);
    if (c == '[') return read_array(out, depth);
    if (c == '"') {
      std::string s;
      if (!read_string(s)) return false;
      out = std::move(s);
      return true;
    }
    if (consume("null")) return out = nullptr, true;
    if (consume("true")) return out = true, true;
    if (consume("false")) return out = false, true;
    if (consume("NaN")) return out = std::numeric_limits<double>::quiet_NaN(), true;
    if (consume("Infinity")) return out = std::numeric_limits<double>::infinity(), true;
    if (consume("-Infinity")) return out = -std::numeric_limits<double>::infinity(), true;
    return read_number(out);
  }

  bool read_object(Json& out, int depth) {
    ++pos_;
    out = Json::object();
    skip_ws();
    if (pos_ < text_.size() && text_[pos_] == '}') return ++pos_, true;
    while (true) {
      skip_ws();
      std::string key;
      if (pos_ >= text_.size() || text_[pos_] != '"' || !read_string(key)) return false;
      skip_ws();
      if (!consume(":")) return false;
      skip_ws();
      Json value;
      if (!read_value(value, depth + 1)) return false;
      out[key] = std::move(value);  // a repeated key keeps its place and takes the new value
      skip_ws();
      if (consume("}")) return true;
      if (!consume(",")) return false;
    }
  }

  bool read_array(Json& out, int depth) {
    ++pos_;
    out = Json::array();
    skip_ws();
    if (pos_ < text_.size() && text_[pos_] == ']') return ++pos_, true;
    while (true) {
      skip_ws();
      Json value;
      if (!read_value(value, depth + 1)) return false;
      out.push_back(std::move(value));
      skip_ws();
      if (consume("]")) return true;
      if (!consume(",")) return false;
    }
  }

  bool read_hex4(uint32_t& out) {
    if (pos_ + 4 > text_.size()) return false;
    out = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[pos_++];
      uint32_t d;
      if (c >= '0' && c <= '9') {
        d = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        d = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        d = c - 'A' + 10;
      } else {
        return false;
      }
      out = out * 16 + d;
    }
    return true;
  }

  static void append_utf8(std::string& s, uint32_t cp) {
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  bool read_string(std::string& out) {
    ++pos_;  // opening quote
    while (pos_ < text_.size()) {
      unsigned char c = text_[pos_++];
      if (c == '"') return true;
      if (c < 0x20) return false;  // Python's strict mode refuses raw control characters
      if (c != '\\') {
        out += static_cast<char>(c);
        continue;
      }
      if (pos_ >= text_.size()) return false;
      char e = text_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          uint32_t cp;
          if (!read_hex4(cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00) {
            // A high surrogate must pair with a following low one: a lone surrogate is valid
            // Python but has no UTF-8 form, so such text cannot be rendered.
            uint32_t low;
            if (!consume("\\u") || !read_hex4(low) || low < 0xDC00 || low >= 0xE000) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            return false;
          }
          append_utf8(out, cp);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }

  bool read_number(Json& out) {
    size_t start = pos_;
    if (pos_ < text_.size() && text_[pos_] == '-') ++pos_;
    auto digits = [&] {
      size_t from = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      return pos_ - from;
    };
    if (pos_ >= text_.size()) return false;
    if (text_[pos_] == '0') {
      ++pos_;
    } else if (digits() == 0) {
      return false;
    }
    bool is_float = false;
    if (pos_ + 1 < text_.size() && text_[pos_] == '.' && std::isdigit(text_[pos_ + 1])) {
      ++pos_;
      digits();
      is_float = true;
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      size_t mark = pos_++;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (digits() == 0) {
        pos_ = mark;  // like Python, "1e" is the number 1 followed by garbage
      } else {
        is_float = true;
      }
    }
    std::string lexeme(text_.substr(start, pos_ - start));
    if (!is_float) {
      int64_t i;
      auto [p, ec] = std::from_chars(lexeme.data(), lexeme.data() + lexeme.size(), i);
      if (ec == std::errc()) return out = i, true;
      uint64_t u;
      auto [pu, ecu] = std::from_chars(lexeme.data(), lexeme.data() + lexeme.size(), u);
      if (ecu == std::errc()) return out = u, true;
    }
    out = std::strtod(lexeme.c_str(), nullptr);  // overflow gives ±infinity, as in Python
    return true;
  }

  std::string_view text_;
  size_t pos_ = 0;
};

// Python's float repr: the shortest round-tripping digits, positional for decimal exponents in
// [-4, 16) with at least one fractional digit, otherwise d[.ddd]e±XX.
void append_float(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  if (std::isinf(v)) {
    out += v < 0 ? "-Infinity" : "Infinity";
    return;
  }
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view sci(buf, end - buf);  // [-]d[.ddd]e±XX
  bool negative = sci.front() == '-';
  if (negative) sci.remove_prefix(1);
  size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e)) {
    if (c != '.') digits += c;
  }
  int exponent = std::atoi(std::string(sci.substr(e + 1)).c_str());
  if (negative) out += '-';
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0.";
      out.append(-exponent - 1, '0');
      out += digits;
    } else if (static_cast<int>(digits.size()) <= exponent + 1) {
      out += digits;
      out.append(exponent + 1 - digits.size(), '0');
      out += ".0";
    } else {
      out += digits.substr(0, exponent + 1);
      out += '.';
      out += digits.substr(exponent + 1);
    }
    return;
  }
  out += digits[0];
  if (digits.size() > 1) {
    out += '.';
    out += digits.substr(1);
  }
  char exp_text[16];
  std::snprintf(exp_text, sizeof exp_text, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  out += exp_text;
}

void append_value(std::string& out, const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
      out += "null";
      return;
    case Json::value_t::boolean:
      out += v.get<bool>() ? "true" : "false";
      return;
    case Json::value_t::number_integer:
      out += std::to_string(v.get<int64_t>());
      return;
    case Json::value_t::number_unsigned:
      out += std::to_string(v.get<uint64_t>());
      return;
    case Json::value_t::number_float:
      append_float(out, v.get<double>());
      return;
    case Json::value_t::string:
      append_python_json_string(out, v.get_ref<const std::string&>());
      return;
    case Json::value_t::array: {
      out += '[';
      bool first = true;
      for (const Json& e : v) {
        if (!first) out += ", ";
        first = false;
        append_value(out, e);
      }
      out += ']';
      return;
    }
    case Json::value_t::object: {
      out += '{';
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!first) out += ", ";
        first = false;
        append_python_json_string(out, it.key());
        out += ": ";
        append_value(out, it.value());
      }
      out += '}';
      return;
    }
    case Json::value_t::binary:
    case Json::value_t::discarded:
      out += "null";
      return;
  }
}

}  // namespace

std::optional<nlohmann::ordered_json> parse_python_json(std::string_view text) {
  Json out;
  if (!Reader(text).read_document(out)) return std::nullopt;
  return out;
}

std::string dump_python_json(const nlohmann::ordered_json& value) {
  std::string out;
  append_value(out, value);
  return out;
}

void append_python_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (char ch : text) {
    unsigned char c = ch;
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

bool json_truthy(const nlohmann::ordered_json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return false;
    case Json::value_t::boolean:
      return value.get<bool>();
    case Json::value_t::number_integer:
      return value.get<int64_t>() != 0;
    case Json::value_t::number_unsigned:
      return value.get<uint64_t>() != 0;
    case Json::value_t::number_float:
      return value.get<double>() != 0.0;
    case Json::value_t::string:
      return !value.get_ref<const std::string&>().empty();
    case Json::value_t::array:
    case Json::value_t::object:
      return !value.empty();
    default:
      return true;
  }
}

}  // namespace magnetar::chat
