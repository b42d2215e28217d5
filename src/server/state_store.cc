#include "server/state_store.h"

namespace magnetar::server {

const char* save_reason_name(SaveReason reason) {
  switch (reason) {
    case SaveReason::kCold:
      return "cold";
    case SaveReason::kContinued:
      return "continued";
    case SaveReason::kEvict:
      return "evict";
    case SaveReason::kShutdown:
      return "shutdown";
  }
  return "unknown";
}

}  // namespace magnetar::server
