// A rendered prompt as the tokenizer must see it: a sequence of pieces, each either one control
// token written as its string (from the template only) or plain text. Plain text is tokenised
// with special-token matching off, so a client cannot forge `<｜Assistant｜>` or `</think>`
// (official-encoding.md §6 row 35); adjacent plain pieces are merged so that BPE sees the same
// runs of text as when the whole prompt is tokenised at once.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace magnetar::chat {

struct PromptPiece {
  std::string text;
  bool is_control = false;
};

class Prompt {
 public:
  // Text from the client (content, reasoning, tool names and arguments, schemas): always plain.
  void add_text(std::string_view text);
  // One control token, e.g. kUser.
  void add_control(std::string_view token);
  // Template text that may embed control strings (the tools block mentions `<think>` and
  // `<｜DSML｜tool_calls>`): each control string in it becomes a control piece.
  void add_template(std::string_view text);

  const std::vector<PromptPiece>& pieces() const { return pieces_; }
  std::string text() const;

 private:
  std::vector<PromptPiece> pieces_;
};

}  // namespace magnetar::chat
