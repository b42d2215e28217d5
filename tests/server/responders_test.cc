// The wire shapes of each API: SSE framing and event order for a stream carrying reasoning,
// content and two tool calls, and the non-streaming bodies, all checked against the event
// sequence they were made from.
#include <gtest/gtest.h>

#include "server/anthropic_api.h"
#include "server/openai_api.h"
#include "server/responses_api.h"
#include "tokenizer/tokenizer_fixture.h"

namespace magnetar::server {
namespace {

ApiContext api() {
  ApiContext c;
  c.tokenizer = &tokenizer::testing::v4_tokenizer();
  c.context = 4096;
  c.default_max_tokens = 100;
  c.max_tokens_limit = 1000;
  c.models.id = "deepseek-v4-flash";
  return c;
}

struct SseEvent {
  std::string name;  // the `event:` line, "" when absent
  std::string data;  // the `data:` line
  Json json;         // data parsed (null for [DONE])
};

// Splits SSE text into events, checking the framing: blocks end with a blank line, hold at most
// one `event:` and exactly one `data:` line, and `data` is JSON or [DONE]; comments are skipped.
std::vector<SseEvent> parse_sse(const std::string& text) {
  std::vector<SseEvent> out;
  EXPECT_TRUE(text.empty() || text.ends_with("\n\n")) << text;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find("\n\n", at);
    EXPECT_NE(end, std::string::npos);
    if (end == std::string::npos) break;
    std::string block = text.substr(at, end - at);
    at = end + 2;
    if (block.starts_with(":")) continue;
    SseEvent e;
    size_t line_start = 0;
    int data_lines = 0;
    while (line_start <= block.size()) {
      size_t nl = block.find('\n', line_start);
      std::string line =
          block.substr(line_start, nl == std::string::npos ? std::string::npos : nl - line_start);
      if (line.starts_with("event: ")) {
        EXPECT_TRUE(e.name.empty());
        e.name = line.substr(7);
      } else if (line.starts_with("data: ")) {
        ++data_lines;
        e.data = line.substr(6);
      } else {
        ADD_FAILURE() << "unexpected SSE line: " << line;
      }
      if (nl == std::string::npos) break;
      line_start = nl + 1;
    }
    EXPECT_EQ(data_lines, 1) << block;
    if (e.data != "[DONE]") e.json = Json::parse(e.data);
    out.push_back(std::move(e));
  }
  return out;
}

// A generation with reasoning, content and two calls, as the scheduler reports it.
std::vector<Event> sample_events() {
  using Kind = Event::Kind;
  std::vector<Event> e;
  Event started;
  started.kind = Kind::kStarted;
  started.usage.prompt_tokens = 20;
  started.usage.cached_tokens = 8;
  e.push_back(started);
  e.push_back(Event::delta(Kind::kReasoning, "Let me "));
  e.push_back(Event::delta(Kind::kReasoning, "see."));
  e.push_back(Event::delta(Kind::kContent, "Checking"));
  e.push_back(Event::delta(Kind::kContent, " now."));
  e.push_back(Event::delta(Kind::kToolCallBegin, "get_weather", 0, "id_a"));
  e.push_back(Event::delta(Kind::kToolCallArguments, "{\"city\": \"", 0));
  e.push_back(Event::delta(Kind::kToolCallArguments, "Paris\"}", 0));
  e.push_back(Event::delta(Kind::kToolCallEnd, "", 0));
  e.push_back(Event::delta(Kind::kToolCallBegin, "now", 1, "id_b"));
  e.push_back(Event::delta(Kind::kToolCallArguments, "{}", 1));
  e.push_back(Event::delta(Kind::kToolCallEnd, "", 1));
  return e;
}

GenerationResult sample_result() {
  GenerationResult r;
  r.finish = FinishReason::kToolCalls;
  r.reasoning = "Let me see.";
  r.content = "Checking now.";
  r.tool_calls = {{"id_a", "get_weather", "{\"city\": \"Paris\"}"}, {"id_b", "now", "{}"}};
  r.usage = {
      .prompt_tokens = 20, .cached_tokens = 8, .completion_tokens = 30, .reasoning_tokens = 5};
  return r;
}

std::string stream_all(Responder& r, const GenerationResult& result) {
  std::string out = r.stream_open();
  for (const Event& e : sample_events()) out += r.stream_event(e);
  return out + r.stream_close(result);
}

TEST(ChatStream, ChunksDeltasAndDone) {
  Prepared p = prepare_chat_completion(
      Json::parse(R"({"messages": [], "stream": true, "stream_options": {"include_usage": true}})"),
      api());
  std::vector<SseEvent> events = parse_sse(stream_all(*p.responder, sample_result()));
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.back().data, "[DONE]");
  std::string reasoning, content, args[2], names[2], ids[2];
  const std::string id = events[0].json["id"];
  EXPECT_EQ(events[0].json["choices"][0]["delta"]["role"], "assistant");
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    const Json& c = events[i].json;
    EXPECT_TRUE(events[i].name.empty());
    EXPECT_EQ(c["id"], id);
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    if (c["choices"].empty()) continue;
    const Json& d = c["choices"][0]["delta"];
    reasoning += d.value("reasoning_content", "");
    content += d.value("content", "");
    for (const Json& t : d.value("tool_calls", Json::array())) {
      int k = t["index"];
      if (t.contains("id")) {
        EXPECT_EQ(args[k], "") << "the id and name come first";
        ids[k] = t["id"];
        names[k] = t["function"]["name"];
      }
      args[k] += t["function"]["arguments"].get<std::string>();
    }
  }
  EXPECT_EQ(reasoning, "Let me see.");
  EXPECT_EQ(content, "Checking now.");
  EXPECT_EQ(names[0], "get_weather");
  EXPECT_EQ(ids[1], "id_b");
  EXPECT_EQ(args[0], "{\"city\": \"Paris\"}");
  EXPECT_EQ(args[1], "{}");
  const Json& finish = events[events.size() - 3].json;
  EXPECT_EQ(finish["choices"][0]["finish_reason"], "tool_calls");
  const Json& usage = events[events.size() - 2].json;
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["prompt_tokens"], 20);
  EXPECT_EQ(usage["usage"]["total_tokens"], 50);
  EXPECT_EQ(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
}

TEST(ChatStream, ErrorsEndWithAnErrorObject) {
  Prepared p = prepare_chat_completion(Json::parse(R"({"messages": [], "stream": true})"), api());
  GenerationResult r;
  r.finish = FinishReason::kError;
  r.error = "the engine failed";
  std::vector<SseEvent> events = parse_sse(p.responder->stream_close(r));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].json["error"]["message"], "the engine failed");
}

TEST(ChatBody, MessageShape) {
  Prepared p =
      prepare_chat_completion(Json::parse(R"({"messages": [], "model": "deepseek-chat"})"), api());
  Json body = Json::parse(p.responder->body(sample_result()));
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["model"], "deepseek-chat");
  const Json& m = body["choices"][0]["message"];
  EXPECT_EQ(m["content"], "Checking now.");
  EXPECT_EQ(m["reasoning_content"], "Let me see.");
  EXPECT_EQ(m["tool_calls"][0], Json::parse(R"({"id": "id_a", "type": "function",
      "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}})"));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(body["usage"]["completion_tokens_details"]["reasoning_tokens"], 5);
}

TEST(CompletionStream, TextChunksThenFinishUsageAndDone) {
  Prepared p = prepare_completion(
      Json::parse(R"({"prompt": "x", "stream": true, "stream_options": {"include_usage": true}})"),
      api());
  GenerationResult r;
  r.finish = FinishReason::kLength;
  r.text = "ab";
  std::string text = p.responder->stream_open();
  text += p.responder->stream_event(Event::delta(Event::Kind::kContent, "a"));
  text += p.responder->stream_event(Event::delta(Event::Kind::kContent, "b"));
  std::vector<SseEvent> events = parse_sse(text + p.responder->stream_close(r));
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0].json["choices"][0]["text"], "a");
  EXPECT_EQ(events[1].json["choices"][0]["text"], "b");
  EXPECT_EQ(events[2].json["choices"][0]["finish_reason"], "length");
  EXPECT_TRUE(events[3].json["choices"].empty());
  EXPECT_EQ(events[4].data, "[DONE]");
  Json body = Json::parse(p.responder->body(r));
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["choices"][0]["text"], "ab");
}

TEST(AnthropicStream, NamedEventsInBlockOrder) {
  Prepared p = prepare_message(Json::parse(R"({"messages": [], "stream": true})"), api());
  std::vector<SseEvent> events = parse_sse(stream_all(*p.responder, sample_result()));
  std::vector<std::string> names;
  for (const SseEvent& e : events) {
    EXPECT_EQ(e.name, e.json["type"]) << "the event name is the data's type";
    names.push_back(e.name);
  }
  const std::vector<std::string> expected = {
      "message_start",       "content_block_start", "content_block_delta", "content_block_delta",
      "content_block_delta", "content_block_stop",  "content_block_start", "content_block_delta",
      "content_block_delta", "content_block_stop",  "content_block_start", "content_block_delta",
      "content_block_delta", "content_block_stop",  "content_block_start", "content_block_delta",
      "content_block_stop",  "message_delta",       "message_stop"};
  EXPECT_EQ(names, expected);
  EXPECT_EQ(events[0].json["message"]["usage"]["input_tokens"], 12);
  EXPECT_EQ(events[0].json["message"]["usage"]["cache_read_input_tokens"], 8);
  EXPECT_EQ(events[1].json["content_block"]["type"], "thinking");
  EXPECT_EQ(events[4].json["delta"]["type"], "signature_delta");
  EXPECT_EQ(events[6].json["content_block"]["type"], "text");
  EXPECT_EQ(events[10].json["content_block"], Json::parse(R"({"type": "tool_use", "id": "id_a",
      "name": "get_weather", "input": {}})"));
  std::string partial = std::string(events[11].json["delta"]["partial_json"]) +
                        std::string(events[12].json["delta"]["partial_json"]);
  EXPECT_EQ(Json::parse(partial), Json::parse(R"({"city": "Paris"})"));
  int index = -1;
  for (const SseEvent& e : events) {
    if (e.name == "content_block_start") {
      EXPECT_EQ(e.json["index"], index + 1) << "block indexes increase by one";
      index = e.json["index"];
    }
  }
  EXPECT_EQ(index, 3);
  EXPECT_EQ(events[17].json["delta"]["stop_reason"], "tool_use");
  EXPECT_EQ(events[17].json["usage"]["output_tokens"], 30);
  EXPECT_EQ(p.responder->stream_keepalive(), "event: ping\ndata: {\"type\":\"ping\"}\n\n");
}

TEST(AnthropicBody, BlocksStopReasonsAndSignatures) {
  Prepared p = prepare_message(Json::parse(R"({"messages": []})"), api());
  Json body = Json::parse(p.responder->body(sample_result()));
  EXPECT_TRUE(body["id"].get<std::string>().starts_with("msg_"));
  ASSERT_EQ(body["content"].size(), 4u);
  EXPECT_EQ(body["content"][0]["type"], "thinking");
  EXPECT_EQ(body["content"][0]["signature"].get<std::string>().size(), 64u);
  EXPECT_EQ(body["content"][2]["input"], Json::parse(R"({"city": "Paris"})"));
  EXPECT_EQ(body["stop_reason"], "tool_use");
  GenerationResult stopped;
  stopped.stop_sequence = "END";
  Json s = Json::parse(p.responder->body(stopped));
  EXPECT_EQ(s["stop_reason"], "stop_sequence");
  EXPECT_EQ(s["stop_sequence"], "END");
  EXPECT_EQ(s["content"], Json::parse(R"([{"type": "text", "text": ""}])"));
  GenerationResult length;
  length.finish = FinishReason::kLength;
  EXPECT_EQ(Json::parse(p.responder->body(length))["stop_reason"], "max_tokens");
}

TEST(ResponsesStream, TypedEventsWithSequenceNumbers) {
  Prepared p = prepare_response(Json::parse(R"({"input": "x", "stream": true})"), api());
  std::vector<SseEvent> events = parse_sse(stream_all(*p.responder, sample_result()));
  std::vector<std::string> types;
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].name, events[i].json["type"]);
    EXPECT_EQ(events[i].json["sequence_number"], static_cast<int>(i));
    types.push_back(events[i].name);
  }
  const std::vector<std::string> expected = {"response.created",
                                             "response.in_progress",
                                             "response.output_item.added",  // reasoning
                                             "response.content_part.added",
                                             "response.reasoning_text.delta",
                                             "response.reasoning_text.delta",
                                             "response.reasoning_text.done",
                                             "response.content_part.done",
                                             "response.output_item.done",
                                             "response.output_item.added",  // message
                                             "response.content_part.added",
                                             "response.output_text.delta",
                                             "response.output_text.delta",
                                             "response.output_text.done",
                                             "response.content_part.done",
                                             "response.output_item.done",
                                             "response.output_item.added",  // call 0
                                             "response.function_call_arguments.delta",
                                             "response.function_call_arguments.delta",
                                             "response.function_call_arguments.done",
                                             "response.output_item.done",
                                             "response.output_item.added",  // call 1
                                             "response.function_call_arguments.delta",
                                             "response.function_call_arguments.done",
                                             "response.output_item.done",
                                             "response.completed"};
  EXPECT_EQ(types, expected);
  const Json& done = events.back().json["response"];
  EXPECT_EQ(done["status"], "completed");
  ASSERT_EQ(done["output"].size(), 4u);
  // The final items carry the ids and output indexes the stream announced.
  for (const SseEvent& e : events) {
    if (e.name != "response.output_item.done") continue;
    EXPECT_EQ(done["output"][e.json["output_index"].get<int>()]["id"], e.json["item"]["id"]);
  }
  EXPECT_EQ(done["output"][2]["arguments"], "{\"city\": \"Paris\"}");
  EXPECT_EQ(done["output"][2]["call_id"], "id_a");
  EXPECT_EQ(done["usage"]["output_tokens_details"]["reasoning_tokens"], 5);
  EXPECT_EQ(done["usage"]["input_tokens_details"]["cached_tokens"], 8);
}

TEST(ResponsesBody, StatusFollowsTheFinish) {
  Prepared p = prepare_response(
      Json::parse(R"({"input": "x", "reasoning": {"summary": "auto"}, "instructions": "i"})"),
      api());
  Json body = Json::parse(p.responder->body(sample_result()));
  EXPECT_EQ(body["object"], "response");
  EXPECT_EQ(body["instructions"], "i");
  EXPECT_EQ(body["output"][0]["summary"][0]["text"], "Let me see.") << "summary requested";
  GenerationResult length;
  length.finish = FinishReason::kLength;
  length.content = "partial";
  Json incomplete = Json::parse(p.responder->body(length));
  EXPECT_EQ(incomplete["status"], "incomplete");
  EXPECT_EQ(incomplete["incomplete_details"]["reason"], "max_output_tokens");
  EXPECT_EQ(incomplete["output"][0]["status"], "incomplete");
  GenerationResult failed;
  failed.finish = FinishReason::kError;
  failed.error = "boom";
  EXPECT_EQ(Json::parse(p.responder->body(failed))["error"]["message"], "boom");
}

}  // namespace
}  // namespace magnetar::server
