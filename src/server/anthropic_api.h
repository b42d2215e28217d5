// Anthropic Messages (POST /v1/messages) and token counting (POST /v1/messages/count_tokens):
// request parsing and response shapes, streamed as Anthropic's named SSE events and not
// (server-api.md §5.4, §9, §10.3).
//
// Differences from ds4 (its §19 weaknesses): message ids are `msg_` + random hex; a stop
// sequence reports stop_reason "stop_sequence" with the string; usage counts uncached input as
// input_tokens and reused tokens as cache_read_input_tokens; keepalives after message_start are
// `ping` events; thinking signatures are an HMAC of the thinking text under a per-process key
// (opaque to clients; not checked when a client sends them back); tool_choice "any" / "tool" is
// refused instead of ignored.
#pragma once

#include "server/api_common.h"

namespace magnetar::server {

Prepared prepare_message(const Json& request, const ApiContext& ctx);

// The body of /v1/messages/count_tokens: {"input_tokens": N} for the rendered prompt.
std::string count_message_tokens(const Json& request, const ApiContext& ctx);

}  // namespace magnetar::server
