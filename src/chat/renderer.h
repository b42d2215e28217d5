// The DeepSeek V4 chat encoding (official-encoding.md §2): messages + options → the prompt text
// the model was trained on, byte for byte, as control and plain pieces.
//
// Steps: tool messages are folded into user turns and sorted into call order (§2.2); in thinking
// mode without tools the reasoning of earlier turns and developer messages before the last user
// turn are dropped (§2.3); then each message renders as prefix + body + transition (§2.4–§2.13).
// The encoder's `context` argument (incremental encoding, §2.14) is not offered: callers render the
// whole conversation.
#pragma once

#include <string>
#include <vector>

#include "chat/message.h"
#include "chat/prompt.h"
#include "chat/render_options.h"

namespace magnetar::chat {

// Throws ChatError for what the encoder rejects: a developer message without content, an active
// task with an unknown name, and (with reject_non_object_arguments) non-object tool arguments.
Prompt render_prompt(const std::vector<Message>& messages, const RenderOptions& options);

// The prompt as one string (the pieces concatenated).
std::string render_text(const std::vector<Message>& messages, const RenderOptions& options);

}  // namespace magnetar::chat
