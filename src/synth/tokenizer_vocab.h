// The DeepSeek V4 tokenizer as GGUF metadata.
//
// ds4's published GGUFs carry the full V4 tokenizer (tokenizer.ggml.tokens / merges / token_type
// and the bos/eos/padding ids, gguf.md §2.3). `magnetar synth` writes the same arrays into its
// synthetic files so that a synthetic model tokenizes exactly like the real one. The data comes
// from data/deepseek-v4-tokenizer/: the DeepSeek V3 tokenizer.json (the V4 BPE is the V3 BPE) plus
// v4_added_tokens.json, the added tokens V4 puts on top of it; see that folder's README.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "gguf/gguf_value.h"

namespace magnetar::synth {

// The values of tokenizer.ggml.token_type (ggml's llama_token_type) this vocabulary uses; ggml
// also defines 2 (unknown) and 6 (byte), which a byte-level BPE vocabulary has no use for.
inline constexpr int32_t kTokenTypeNormal = 1;
inline constexpr int32_t kTokenTypeControl = 3;
inline constexpr int32_t kTokenTypeUserDefined = 4;
inline constexpr int32_t kTokenTypeUnused = 5;

// The embedding rows of DeepSeek V4 Flash (ds4.c DS4_N_VOCAB); every token id is below it.
inline constexpr uint32_t kDeepSeekV4VocabSize = 129280;

struct TokenizerVocab {
  std::vector<std::string> tokens;   // id = index, size = vocab_size, GPT-2 byte-level form
  std::vector<std::string> merges;   // "left right", rank = index
  std::vector<int32_t> token_types;  // kTokenType*, one per token
  uint32_t bos_id = 0;
  uint32_t eos_id = 0;
  uint32_t pad_id = 0;
};

// Reads <tokenizer_dir>/tokenizer.json (Hugging Face format: model.vocab, model.merges as "a b"
// strings or [a, b] pairs, added_tokens), <tokenizer_dir>/v4_added_tokens.json (the V4 overlay)
// and <tokenizer_dir>/tokenizer_config.json (which strings are BOS, EOS and padding). Ids above
// the largest defined one, up to vocab_size, become unused "[PAD<id>]" tokens, as the GGUF
// converter writes them.
//
// Token types follow the rule the GGUF converter applies: a model.vocab entry is normal; an added
// token is control when it is marked special or is shaped like a control token (<｜…｜> or <|…|>),
// else user-defined (so <think>, </think> and ｜DSML｜ are user-defined).
//
// Throws std::runtime_error naming the file and the problem: unreadable file, malformed JSON, a
// field of the wrong type, an id given twice, an overlay entry that contradicts tokenizer.json, one
// string at two ids, an id >= vocab_size, an id with no token below the largest defined id, or a
// token ds4 requires (BOS, EOS, <｜User｜>, <｜Assistant｜>, <think>, </think>, ｜DSML｜) missing.
TokenizerVocab load_deepseek_v4_vocab(const std::filesystem::path& tokenizer_dir,
                                      uint32_t vocab_size = kDeepSeekV4VocabSize);

// Sets the tokenizer keys of a model file (gguf.md §2.3) from `vocab`: tokenizer.ggml.model
// "gpt2", pre "joyai-llm", tokens, merges, token_type, and the bos/eos/padding ids.
void add_tokenizer_metadata(const TokenizerVocab& vocab, gguf::GgufMetadata& metadata);

// The tokenizer folder the CLI uses, the first of: $MAGNETAR_TOKENIZER_DIR (used as given: a
// directory without the tokenizer files is an error, not a reason to look elsewhere), <directory
// of the running executable>/../share/magnetar/deepseek-v4-tokenizer, and the source tree's
// data/deepseek-v4-tokenizer. Throws std::runtime_error listing the places searched.
std::filesystem::path find_tokenizer_dir();

}  // namespace magnetar::synth
