// OpenAI Responses (POST /v1/responses): input items → conversation, and the response object
// streamed as typed events or returned whole (server-api.md §5.3, §9, §10.4).
//
// Input: a string, or items of type message (text parts only), reasoning (its reasoning_text
// content, else its summary texts, becomes the next assistant turn's reasoning), function_call
// and function_call_output; `instructions` becomes the first system message; function tools are
// rendered, other tool types and forced tool choices are refused. There is no stored state:
// previous_response_id and conversation are refused (send the full input), as in ds4.
//
// Output: a reasoning item (content `reasoning_text`; with reasoning.summary requested, the same
// text as its summary), a message item, and one function_call item per call. Unlike ds4 (§19)
// every event is also named on an `event:` line, function-call arguments stream as the model
// writes them, each item closes when the next one starts, and usage counts reasoning tokens.
#pragma once

#include "server/api_common.h"

namespace magnetar::server {

Prepared prepare_response(const Json& request, const ApiContext& ctx);

// The input items as an OpenAI chat-completions request (messages, tools, tool_choice,
// reasoning_effort, response_format), for chat::chat_request_from_openai. Exposed for tests.
Json responses_to_chat(const Json& request);

}  // namespace magnetar::server
