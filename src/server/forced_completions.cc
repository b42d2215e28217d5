#include "server/forced_completions.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "chat/template_strings.h"

namespace magnetar::server {

ForcedCompletions::ForcedCompletions(const std::filesystem::path& file,
                                     const tokenizer::Tokenizer& tokenizer) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + file.string());
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::ordered_json object;
  try {
    object = nlohmann::ordered_json::parse(text.str());
  } catch (const nlohmann::json::parse_error& e) {
    throw std::runtime_error(file.string() + ": not JSON: " + e.what());
  }
  if (!object.is_object()) throw std::runtime_error(file.string() + ": expected a JSON object");
  for (const auto& [trigger, completion] : object.items()) {
    if (!completion.is_string()) {
      throw std::runtime_error(file.string() + ": the completion for '" + trigger +
                               "' is not a string");
    }
    entries_.emplace_back(trigger,
                          tokenizer.encode(completion.get<std::string>(), /*allow_special=*/true));
  }
}

std::optional<std::vector<int32_t>> ForcedCompletions::match(std::string_view prompt_text) const {
  size_t last_user = prompt_text.rfind(chat::kUser);
  std::string_view turn =
      last_user == std::string_view::npos ? prompt_text : prompt_text.substr(last_user);
  for (const auto& [trigger, tokens] : entries_) {
    if (turn.find(trigger) != std::string_view::npos) return tokens;
  }
  return std::nullopt;
}

}  // namespace magnetar::server
