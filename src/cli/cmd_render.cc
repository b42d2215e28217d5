// `magnetar render`: print the prompt a chat request renders to (the official DeepSeek V4
// encoding), or its token ids.
//
//   magnetar render [--file REQUEST.json] [--format openai|anthropic|deepseek|auto]
//                   [--thinking off|high|max] [--ids -m MODEL]
//
// The request is read from --file or stdin. Formats: an OpenAI chat-completions request, an
// Anthropic messages request, or a bare array of messages in DeepSeek's own encoder format;
// `auto` (the default) takes an array as DeepSeek's format and recognises Anthropic requests by
// their top-level `system`, their tool_use / tool_result / thinking blocks or their input_schema
// tools. --thinking overrides what the request says. The text is written without a trailing
// newline, so its bytes are exactly the prompt's. With --ids the ids are printed as a JSON array:
// control pieces are looked up as single tokens, client text is encoded with special tokens off.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "chat/anthropic_request.h"
#include "chat/chat_error.h"
#include "chat/deepseek_messages.h"
#include "chat/openai_request.h"
#include "chat/renderer.h"
#include "cli/commands.h"
#include "engine/prompt_tokens.h"
#include "gguf/gguf_reader.h"
#include "tokenizer/tokenizer.h"

namespace magnetar::cli {
namespace {

using Json = nlohmann::ordered_json;

struct RenderCliOptions {
  std::string file;
  std::string format = "auto";
  std::string thinking;
  std::string model;
  bool ids = false;
};

std::string read_input(const std::string& path) {
  if (path.empty()) {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

bool looks_anthropic(const Json& request) {
  if (request.contains("system")) return true;
  for (const Json& tool : request.value("tools", Json::array())) {
    if (tool.is_object() && tool.contains("input_schema")) return true;
  }
  for (const Json& m : request.value("messages", Json::array())) {
    if (!m.is_object() || !m.contains("content") || !m["content"].is_array()) continue;
    for (const Json& block : m["content"]) {
      std::string type = block.is_object() ? block.value("type", "") : "";
      if (type == "tool_use" || type == "tool_result" || type == "thinking" ||
          type == "redacted_thinking") {
        return true;
      }
    }
  }
  return false;
}

chat::ChatRequest to_request(const Json& input, std::string format) {
  if (format == "auto") {
    format = input.is_array() ? "deepseek" : looks_anthropic(input) ? "anthropic" : "openai";
  }
  if (format == "openai") return chat::chat_request_from_openai(input);
  if (format == "anthropic") return chat::chat_request_from_anthropic(input);
  return {chat::messages_from_deepseek_json(input), {}};
}

void apply_thinking_flag(const std::string& flag, chat::RenderOptions& options) {
  if (flag.empty()) return;
  options.mode = flag == "off" ? chat::ThinkingMode::kChat : chat::ThinkingMode::kThinking;
  options.effort = flag == "max" ? chat::ReasoningEffort::kMax : chat::ReasoningEffort::kHigh;
}

std::vector<int32_t> prompt_ids(const chat::Prompt& prompt, const std::string& model) {
  const gguf::GgufFile file = gguf::GgufFile::open(model);
  return engine::prompt_tokens(tokenizer::Tokenizer::from_gguf(file), prompt);
}

int run_render(const RenderCliOptions& o) {
  Json input;
  try {
    input = Json::parse(read_input(o.file));
  } catch (const nlohmann::json::parse_error& e) {
    fmt::print(stderr, "magnetar render: the request is not JSON: {}\n", e.what());
    return kExitError;
  }
  chat::Prompt prompt;
  try {
    chat::ChatRequest request = to_request(input, o.format);
    apply_thinking_flag(o.thinking, request.options);
    prompt = chat::render_prompt(request.messages, request.options);
  } catch (const chat::ChatError& e) {
    fmt::print(stderr, "magnetar render: invalid request: {}\n", e.what());
    return kExitInvalid;
  }
  if (o.ids) {
    fmt::print("{}\n", nlohmann::json(prompt_ids(prompt, o.model)).dump());
    return kExitOk;
  }
  std::string text = prompt.text();
  std::fwrite(text.data(), 1, text.size(), stdout);
  return kExitOk;
}

}  // namespace

Command add_render_command(CLI::App& root) {
  auto o = std::make_shared<RenderCliOptions>();
  CLI::App* app =
      root.add_subcommand("render", "Print the prompt a chat request renders to (or its ids)");
  app->add_option("--file", o->file, "The request JSON (default: stdin)");
  app->add_option("--format", o->format, "Request format (default auto)")
      ->check(CLI::IsMember({"openai", "anthropic", "deepseek", "auto"}));
  app->add_option("--thinking", o->thinking, "Override the request's thinking mode")
      ->check(CLI::IsMember({"off", "high", "max"}));
  CLI::Option* model =
      app->add_option("-m,--model", o->model, "GGUF model whose tokenizer --ids uses");
  app->add_flag("--ids", o->ids, "Print the token ids as a JSON array instead of the text")
      ->needs(model);
  return {app, [o] { return run_render(*o); }};
}

}  // namespace magnetar::cli
