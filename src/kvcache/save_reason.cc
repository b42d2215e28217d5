#include "kvcache/save_reason.h"

namespace magnetar::kvcache {

std::string_view reason_name(SaveReason reason) {
  switch (reason) {
    case SaveReason::kCold:
      return "cold";
    case SaveReason::kContinued:
      return "continued";
    case SaveReason::kEvict:
      return "evict";
    case SaveReason::kShutdown:
      return "shutdown";
    case SaveReason::kUnknown:
      break;
  }
  return "unknown";
}

std::string_view key_kind_name(KeyKind kind) {
  switch (kind) {
    case KeyKind::kResponsesVisible:
      return "responses-visible";
    case KeyKind::kThinkingVisible:
      return "thinking-visible";
    case KeyKind::kTokenText:
      break;
  }
  return "token-text";
}

}  // namespace magnetar::kvcache
