// JSON with the reference encoder's Python semantics (official-encoding.md §2.8).
#include "chat/python_json.h"

#include <gtest/gtest.h>

#include <string>

namespace magnetar::chat {
namespace {

std::string redump(const std::string& text) {
  auto v = parse_python_json(text);
  EXPECT_TRUE(v) << text;
  return v ? dump_python_json(*v) : "";
}

TEST(PythonJson, SeparatorsOrderAndDuplicates) {
  EXPECT_EQ(redump(R"({"b":1,"a":[1,2,{}],"c":{"x":null}})"),
            R"({"b": 1, "a": [1, 2, {}], "c": {"x": null}})");
  EXPECT_EQ(redump(R"({"k":1,"j":2,"k":3})"), R"({"k": 3, "j": 2})");
  EXPECT_EQ(redump(" \t\n[true,false]\r\n"), "[true, false]");
}

TEST(PythonJson, Floats) {
  EXPECT_EQ(redump("1.50"), "1.5");
  EXPECT_EQ(redump("1e2"), "100.0");
  EXPECT_EQ(redump("-0"), "0");
  EXPECT_EQ(redump("-0.0"), "-0.0");
  EXPECT_EQ(redump("1E400"), "Infinity");
  EXPECT_EQ(redump("-1e400"), "-Infinity");
  EXPECT_EQ(redump("0.0001"), "0.0001");
  EXPECT_EQ(redump("0.00001"), "1e-05");
  EXPECT_EQ(redump("1234567890123456.0"), "1234567890123456.0");
  EXPECT_EQ(redump("1e16"), "1e+16");
  EXPECT_EQ(redump("1.5e300"), "1.5e+300");
  EXPECT_EQ(redump("0.1"), "0.1");
  EXPECT_EQ(redump("123.456"), "123.456");
  EXPECT_EQ(redump("NaN"), "NaN");
  EXPECT_EQ(redump("[Infinity, -Infinity]"), "[Infinity, -Infinity]");
}

TEST(PythonJson, Integers) {
  EXPECT_EQ(redump("12345678901234567890"), "12345678901234567890");
  EXPECT_EQ(redump("-9223372036854775808"), "-9223372036854775808");
  EXPECT_EQ(redump("0"), "0");
}

TEST(PythonJson, StringEscapes) {
  EXPECT_EQ(redump(R"("\u00e9\/\b\f\n\r\t\u0001\u007f\u2028\"\\")"),
            "\"é/\\b\\f\\n\\r\\t\\u0001\x7f\u2028\\\"\\\\\"");
  EXPECT_EQ(redump(R"("\ud83d\ude00")"), "\"😀\"");
}

TEST(PythonJson, WhatPythonRefuses) {
  for (const char* bad : {"", "{", "[1,]", "{\"a\" 1}", "01", "1e", "\"\x01\"", "\xEF\xBB\xBF{}",
                          "'a'", "nul", "[1] x", "\"\\ud800\"", "\"\\x\"", "+1", ".5"}) {
    EXPECT_FALSE(parse_python_json(bad)) << bad;
  }
}

TEST(PythonJson, Truthiness) {
  for (const char* falsy : {"null", "false", "0", "0.0", "\"\"", "[]", "{}"}) {
    EXPECT_FALSE(json_truthy(*parse_python_json(falsy))) << falsy;
  }
  for (const char* truthy : {"true", "1", "-0.5", "\"x\"", "[0]", "{\"a\": null}", "NaN"}) {
    EXPECT_TRUE(json_truthy(*parse_python_json(truthy))) << truthy;
  }
}

}  // namespace
}  // namespace magnetar::chat
