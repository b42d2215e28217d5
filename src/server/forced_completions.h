// TEST-ONLY: forced decoding, for tests of tool-call flows on a model with random weights.
//
// `magnetar serve --test-forced-completion FILE` reads a JSON object {"TRIGGER": "COMPLETION",
// ...}. A request whose prompt text after its last `<｜User｜>` contains TRIGGER (the first one in
// file order that matches) generates COMPLETION instead of sampling: the text is tokenised with
// control tokens recognised (so `</think>`, `｜DSML｜` and `<｜end▁of▁sentence｜>` are the tokens a
// real model would sample) and each step takes the next of those tokens, then EOS. Everything
// else runs as usual (prefill, one forward pass per token, parsing, streaming), so the server's
// real pipeline is exercised. Requests that match no trigger sample normally. Never use it to
// serve clients.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace magnetar::server {

class ForcedCompletions {
 public:
  // Throws std::runtime_error for an unreadable file or one that is not such an object.
  ForcedCompletions(const std::filesystem::path& file, const tokenizer::Tokenizer& tokenizer);

  std::optional<std::vector<int32_t>> match(std::string_view prompt_text) const;

 private:
  std::vector<std::pair<std::string, std::vector<int32_t>>> entries_;
};

}  // namespace magnetar::server
