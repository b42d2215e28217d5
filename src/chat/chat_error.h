// The error every part of src/chat throws for input the DeepSeek V4 encoding cannot render: a
// request that the official encoder rejects (official-encoding.md §1.9) or that an adapter cannot
// map onto it. A server answers it with HTTP 400; the message names the offending field.
#pragma once

#include <stdexcept>
#include <string>

namespace magnetar::chat {

class ChatError : public std::invalid_argument {
 public:
  explicit ChatError(const std::string& message) : std::invalid_argument(message) {}
};

}  // namespace magnetar::chat
