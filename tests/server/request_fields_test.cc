// Typed request fields and error bodies: every wrong type or range is a 400 naming the field, and
// each API gets its own error shape.
#include "server/request_fields.h"

#include <gtest/gtest.h>

#include "server/api_error.h"

namespace magnetar::server {
namespace {

// The ApiError `fn` throws (fails the test when it throws none).
template <typename Fn>
ApiError error_of(Fn fn) {
  try {
    fn();
  } catch (const ApiError& e) {
    return e;
  }
  ADD_FAILURE() << "no ApiError thrown";
  return ApiError(0, "");
}

TEST(RequestFields, AbsentAndNullAreNullopt) {
  Json r = {{"a", nullptr}};
  EXPECT_FALSE(bool_field(r, "a"));
  EXPECT_FALSE(bool_field(r, "b"));
  EXPECT_FALSE(number_field(r, "a", 0, 1));
  EXPECT_FALSE(int_field(r, "b", 0, 1));
  EXPECT_TRUE(stop_strings_field(r, "a", 4).empty());
}

TEST(RequestFields, WrongTypesNameTheField) {
  Json r = Json::parse(R"({"stream": "yes", "temperature": "hot", "max_tokens": 1.5,
                           "stop": [1], "model": 3})");
  ApiError e = error_of([&] { bool_field(r, "stream"); });
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.param(), "stream");
  EXPECT_STREQ(e.what(), "stream must be a boolean");
  EXPECT_EQ(error_of([&] { number_field(r, "temperature", 0, 2); }).param(), "temperature");
  EXPECT_STREQ(error_of([&] { int_field(r, "max_tokens", 0, 100); }).what(),
               "max_tokens must be an integer");
  EXPECT_EQ(error_of([&] { stop_strings_field(r, "stop", 4); }).param(), "stop");
  EXPECT_EQ(error_of([&] { string_field(r, "model"); }).param(), "model");
}

TEST(RequestFields, RangesAreChecked) {
  Json r = {{"temperature", 2.5}, {"max_tokens", -1}, {"n", 256.0}};
  EXPECT_STREQ(error_of([&] { number_field(r, "temperature", 0, 2); }).what(),
               "temperature must be in [0, 2]");
  EXPECT_STREQ(error_of([&] { int_field(r, "max_tokens", 0, 10); }).what(),
               "max_tokens must be in [0, 10]");
  EXPECT_EQ(*int_field(r, "n", 0, 1000), 256) << "an integral float is an integer";
}

TEST(RequestFields, StopStringsDropEmptyOnesAndAreBounded) {
  EXPECT_EQ(stop_strings_field({{"stop", "x"}}, "stop", 4), std::vector<std::string>{"x"});
  EXPECT_EQ(stop_strings_field({{"stop", {"a", "", "b"}}}, "stop", 4),
            (std::vector<std::string>{"a", "b"}));
  Json many = {{"stop", {"1", "2", "3"}}};
  EXPECT_EQ(error_of([&] { stop_strings_field(many, "stop", 2); }).status(), 400);
}

TEST(RequestFields, UnsupportedValuesAreRefusedNeutralOnesPass) {
  Json r = {{"n", 1}, {"logprobs", true}};
  refuse_unsupported(r, "n", {nullptr, 1}, "one choice");
  refuse_unsupported(r, "absent", {nullptr}, "x");
  ApiError e = error_of([&] {
    refuse_unsupported(r, "logprobs", {nullptr, false}, "no logprobs");
  });
  EXPECT_STREQ(e.what(), "logprobs is not supported: no logprobs");
}

TEST(RequestFields, BodyMustBeAJsonObject) {
  EXPECT_EQ(parse_request_body(R"({"a": 1})")["a"], 1);
  EXPECT_EQ(error_of([] { parse_request_body("{\"a\": "); }).status(), 400);
  EXPECT_STREQ(error_of([] { parse_request_body("[1]"); }).what(),
               "the request body must be a JSON object");
  EXPECT_EQ(error_of([] { parse_request_body("{} trailing"); }).status(), 400)
      << "strict JSON: ds4 ignores trailing bytes (server-api.md §4)";
}

TEST(ApiErrors, OpenAiShape) {
  ApiError e(400, "bad things", "some_code", "messages");
  e.extra()["n_ctx"] = 16;
  Json body = Json::parse(error_body(ApiFlavor::kOpenAI, e));
  EXPECT_EQ(body, Json::parse(R"({"error": {"message": "bad things",
      "type": "invalid_request_error", "param": "messages", "code": "some_code", "n_ctx": 16}})"));
  Json plain = Json::parse(error_body(ApiFlavor::kOpenAI, ApiError(404, "nope")));
  EXPECT_EQ(plain["error"]["type"], "not_found_error");
  EXPECT_TRUE(plain["error"]["param"].is_null());
  EXPECT_TRUE(plain["error"]["code"].is_null());
}

TEST(ApiErrors, AnthropicShape) {
  Json body = Json::parse(error_body(ApiFlavor::kAnthropic, ApiError(401, "who are you")));
  EXPECT_EQ(body, Json::parse(R"({"type": "error", "error": {"type": "authentication_error",
                                 "message": "who are you"}})"));
}

TEST(ApiErrors, EachStatusHasItsType) {
  const std::pair<int, const char*> openai[] = {
      {400, "invalid_request_error"},    {401, "authentication_error"}, {404, "not_found_error"},
      {413, "invalid_request_error"},    {429, "rate_limit_error"},     {500, "server_error"},
      {503, "service_unavailable_error"}};
  for (auto [status, type] : openai) EXPECT_EQ(error_type(ApiFlavor::kOpenAI, status), type);
  const std::pair<int, const char*> anthropic[] = {{400, "invalid_request_error"},
                                                   {413, "request_too_large"},
                                                   {429, "rate_limit_error"},
                                                   {500, "api_error"},
                                                   {503, "overloaded_error"}};
  for (auto [status, type] : anthropic) EXPECT_EQ(error_type(ApiFlavor::kAnthropic, status), type);
}

}  // namespace
}  // namespace magnetar::server
