// The special tokens the DeepSeek V4 chat format cannot do without, by their exact strings.
//
// ds4 looks these up by string in tokenizer.ggml.tokens and refuses a vocabulary that lacks any of
// them (gguf.md §2.3); Magnetar's model check and synthetic vocabulary do the same. ｜ is U+FF5C
// and ▁ is U+2581.
#pragma once

#include <array>
#include <string_view>

namespace magnetar::model {

struct SpecialTokenName {
  std::string_view role;  // "bos", "eos", "user", "assistant", "think", "think_end", "dsml"
  std::string_view text;
};

inline constexpr std::array<SpecialTokenName, 7> kRequiredSpecialTokens = {{
    {"bos", "<｜begin▁of▁sentence｜>"},
    {"eos", "<｜end▁of▁sentence｜>"},
    {"user", "<｜User｜>"},
    {"assistant", "<｜Assistant｜>"},
    {"think", "<think>"},
    {"think_end", "</think>"},
    {"dsml", "｜DSML｜"},
}};

}  // namespace magnetar::model
