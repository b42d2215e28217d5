// OpenAI chat completions (POST /v1/chat/completions) and legacy completions
// (POST /v1/completions): request parsing and response shapes, streamed (SSE `data:` chunks
// ending with `data: [DONE]`) and not (server-api.md §5.1, §5.2, §9, §10.1, §10.2).
//
// Chat: reasoning streams as `delta.reasoning_content`, content as `delta.content`, tool calls as
// `delta.tool_calls` (the id and name first, then argument fragments as the model writes them);
// `stream_options.include_usage` adds the usage chunk. Fields the server cannot honour are
// refused rather than ignored: n > 1, logprobs, penalties, logit_bias, tool_choice "required" or
// naming a function.
//
// Completions return the model's raw continuation of the prompt. Unlike ds4 (§5.2, §19), the
// prompt is not wrapped in a chat template: it is the client's text (BOS added unless it starts
// with one; the template's control strings in it are control tokens) or an array of token ids.
#pragma once

#include "server/api_common.h"

namespace magnetar::server {

Prepared prepare_chat_completion(const Json& request, const ApiContext& ctx);
Prepared prepare_completion(const Json& request, const ApiContext& ctx);

// {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details":
// {"cached_tokens"}, "completion_tokens_details": {"reasoning_tokens"}}.
Json openai_usage(const Usage& usage);

}  // namespace magnetar::server
