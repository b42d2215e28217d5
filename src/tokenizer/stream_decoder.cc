#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace magnetar::tokenizer {

StreamDecoder::StreamDecoder(const Tokenizer& t) : tokenizer_(&t) {}

std::string StreamDecoder::push(int32_t id) {
  pending_ += tokenizer_->token_bytes(id);
  const size_t keep = incomplete_suffix_length(pending_);
  std::string ready = pending_.substr(0, pending_.size() - keep);
  pending_.erase(0, pending_.size() - keep);
  return ready;
}

std::string StreamDecoder::flush() {
  std::string rest;
  rest.swap(pending_);
  return rest;
}

}  // namespace magnetar::tokenizer
