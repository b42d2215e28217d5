// Rendering with exact replay of sampled tool calls (server-api.md §14, kvcache/tool_id_map.h).
//
// The conversation is rendered canonically (chat/renderer.h); then each assistant turn whose tool
// calls all map, by id, to one remembered sampled block has its canonical DSML block replaced by
// that block, so the prompt holds the bytes the model wrote and a live session that generated them
// stays a prefix. Turns with unknown ids keep the canonical rendering (the fallback). In a replayed
// block only `｜DSML｜` is a control token, as in the canonical one; everything else is plain text.
#pragma once

#include <vector>

#include "chat/message.h"
#include "chat/prompt.h"
#include "chat/render_options.h"
#include "kvcache/tool_id_map.h"

namespace magnetar::server {

struct ReplayedPrompt {
  chat::Prompt prompt;
  int replayed_turns = 0;   // tool-call turns rendered from the sampled block
  int canonical_turns = 0;  // tool-call turns rendered canonically
};

// `memory` may be null (exact replay disabled). Throws chat::ChatError as the renderer does.
ReplayedPrompt render_with_replay(const std::vector<chat::Message>& messages,
                                  const chat::RenderOptions& options, kvcache::ToolIdMap* memory);

// The prompt pieces of a sampled DSML block: `｜DSML｜` as control pieces, the rest plain.
chat::Prompt dsml_block_prompt(std::string_view block);

}  // namespace magnetar::server
