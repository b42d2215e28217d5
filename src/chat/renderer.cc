#include "chat/renderer.h"

#include <algorithm>
#include <map>

#include "chat/chat_error.h"
#include "chat/dsml_writer.h"
#include "chat/python_json.h"
#include "chat/template_strings.h"

namespace magnetar::chat {
namespace {

// A piece of a folded user turn: the text of a user message or one tool result.
struct Block {
  bool is_tool_result = false;
  std::string tool_call_id;
  std::string text;  // for a tool result: the content to put between the tags
};

// A message after folding; user turns carry their blocks instead of `content`.
struct Turn {
  Message message;
  std::vector<Block> blocks;
};

std::string tool_result_text(const Message& m) {
  if (!m.content_parts) return m.content;
  std::string out;
  for (size_t i = 0; i < m.content_parts->size(); ++i) {
    const ContentPart& part = (*m.content_parts)[i];
    if (i > 0) out += "\n\n";
    out += part.type == "text" ? part.text : "[Unsupported " + part.type + "]";
  }
  return out;
}

// §2.2: consecutive user and tool messages become one user turn (a user message with a task
// starts a turn nothing else is merged into, except tool results).
std::vector<Turn> fold(const std::vector<Message>& messages) {
  std::vector<Turn> turns;
  for (const Message& m : messages) {
    bool after_user = !turns.empty() && turns.back().message.role == Role::kUser;
    if (m.role == Role::kTool) {
      Block block{true, m.tool_call_id, tool_result_text(m)};
      if (after_user) {
        turns.back().blocks.push_back(std::move(block));
      } else {
        Turn t;
        t.message.role = Role::kUser;
        t.blocks.push_back(std::move(block));
        turns.push_back(std::move(t));
      }
    } else if (m.role == Role::kUser) {
      Block block{false, "", m.content};
      if (after_user && !turns.back().message.task) {
        turns.back().blocks.push_back(std::move(block));
      } else {
        Turn t;
        t.message.role = Role::kUser;
        t.message.task = m.task;
        t.blocks.push_back(std::move(block));
        turns.push_back(std::move(t));
      }
    } else {
      turns.push_back({m, {}});
    }
  }
  return turns;
}

// §2.2: tool results of one turn are stably sorted into the order of the latest assistant
// message's calls; unknown ids rank as call 0.
void sort_tool_results(std::vector<Turn>& turns) {
  std::map<std::string, size_t> order;
  for (Turn& t : turns) {
    if (t.message.role == Role::kAssistant && !t.message.tool_calls.empty()) {
      order.clear();
      for (size_t k = 0; k < t.message.tool_calls.size(); ++k) {
        const std::string& id = t.message.tool_calls[k].id;
        if (!id.empty()) order[id] = k;
      }
      continue;
    }
    if (t.message.role != Role::kUser || order.empty()) continue;
    std::vector<size_t> slots;
    std::vector<Block> results;
    for (size_t i = 0; i < t.blocks.size(); ++i) {
      if (t.blocks[i].is_tool_result) {
        slots.push_back(i);
        results.push_back(t.blocks[i]);
      }
    }
    if (results.size() < 2) continue;
    auto rank = [&](const Block& b) {
      auto it = order.find(b.tool_call_id);
      return it == order.end() ? size_t{0} : it->second;
    };
    std::stable_sort(results.begin(), results.end(),
                     [&](const Block& a, const Block& b) { return rank(a) < rank(b); });
    for (size_t i = 0; i < slots.size(); ++i) t.blocks[slots[i]] = std::move(results[i]);
  }
}

bool is_user_like(Role role) { return role == Role::kUser || role == Role::kDeveloper; }

int last_user_index(const std::vector<Turn>& turns) {
  for (int i = static_cast<int>(turns.size()) - 1; i >= 0; --i) {
    if (is_user_like(turns[i].message.role)) return i;
  }
  return -1;
}

std::string_view task_token(const std::string& task) {
  for (const TaskToken& t : kTaskTokens) {
    if (t.task == task) return t.token;
  }
  throw ChatError("unknown task '" + task +
                  "' (known: action, query, authority, domain, title, read_url)");
}

class Renderer {
 public:
  Renderer(std::vector<Turn> turns, const RenderOptions& options)
      : turns_(std::move(turns)), options_(options) {
    thinking_ = options.mode == ThinkingMode::kThinking;
    bool any_tools = std::any_of(turns_.begin(), turns_.end(),
                                 [](const Turn& t) { return !t.message.tools.empty(); });
    drop_ = options.drop_thinking && !any_tools;
    if (thinking_ && drop_) drop_earlier_reasoning();
    last_user_ = last_user_index(turns_);
  }

  Prompt render() {
    if (options_.add_bos) prompt_.add_control(kBos);
    for (size_t i = 0; i < turns_.size(); ++i) {
      if (i == 0 && thinking_ && options_.effort == ReasoningEffort::kMax) {
        prompt_.add_text(kThinkMaxPrefix);
      }
      render_body(i);
      render_transition(i);
    }
    return std::move(prompt_);
  }

 private:
  // §2.3 step 3: before the last user/developer message, assistants lose their reasoning and
  // developer messages are removed.
  void drop_earlier_reasoning() {
    int lu = last_user_index(turns_);
    std::vector<Turn> kept;
    for (int i = 0; i < static_cast<int>(turns_.size()); ++i) {
      Turn& t = turns_[i];
      if (i < lu && t.message.role == Role::kAssistant) t.message.reasoning.clear();
      if (i < lu && t.message.role == Role::kDeveloper) continue;
      kept.push_back(std::move(t));
    }
    turns_ = std::move(kept);
  }

  void render_tools_and_format(const Message& m) {
    if (!m.tools.empty()) {
      prompt_.add_text("\n\n");
      prompt_.add_template(kToolsPre);
      for (size_t k = 0; k < m.tools.size(); ++k) {
        if (k > 0) prompt_.add_text("\n");
        prompt_.add_text(dump_python_json(m.tools[k]));
      }
      prompt_.add_text(kToolsPost);
    }
    if (json_truthy(m.response_format)) {
      prompt_.add_text("\n\n");
      prompt_.add_text(kResponseFormatHead);
      prompt_.add_text(dump_python_json(m.response_format));
    }
  }

  void render_body(size_t i) {
    const Turn& t = turns_[i];
    const Message& m = t.message;
    switch (m.role) {
      case Role::kSystem:
        prompt_.add_text(m.content);
        render_tools_and_format(m);
        return;
      case Role::kDeveloper:
        if (m.content.empty()) throw ChatError("developer message needs non-empty content");
        prompt_.add_control(kUser);
        prompt_.add_text(m.content);
        render_tools_and_format(m);
        return;
      case Role::kUser:
        prompt_.add_control(kUser);
        for (size_t k = 0; k < t.blocks.size(); ++k) {
          if (k > 0) prompt_.add_text("\n\n");
          if (t.blocks[k].is_tool_result) {
            prompt_.add_text(kToolResultOpen);
            prompt_.add_text(t.blocks[k].text);
            prompt_.add_text(kToolResultClose);
          } else {
            prompt_.add_text(t.blocks[k].text);
          }
        }
        return;
      case Role::kLatestReminder:
        prompt_.add_control(kLatestReminder);
        prompt_.add_text(m.content);
        return;
      case Role::kAssistant:
        render_assistant(i);
        return;
      case Role::kTool:
        break;  // folded into user turns before rendering
    }
  }

  // §2.5/§2.6: reasoning + `</think>` only when the turn's reasoning is kept and the previous
  // message did not open the turn with a task token.
  void render_assistant(size_t i) {
    const Message& m = turns_[i].message;
    bool after_task = i > 0 && turns_[i - 1].message.task.has_value();
    if (thinking_ && !after_task && (!drop_ || static_cast<int>(i) > last_user_)) {
      prompt_.add_text(m.reasoning);
      prompt_.add_control(kEndThink);
    }
    prompt_.add_text(m.content);
    append_tool_calls_dsml(prompt_, m.tool_calls, options_.reject_non_object_arguments);
    if (!m.wo_eos) prompt_.add_control(kEos);
  }

  // §2.4 suffix: the generation prompt of a user turn, or a task token.
  void render_transition(size_t i) {
    const Message& m = turns_[i].message;
    if (i + 1 < turns_.size()) {
      Role next = turns_[i + 1].message.role;
      if (next != Role::kAssistant && next != Role::kLatestReminder) return;
    }
    if (m.task) {
      std::string_view token = task_token(*m.task);
      if (*m.task == "action") {
        prompt_.add_control(kAssistant);
        prompt_.add_control(thinking_ ? kThink : kEndThink);
      }
      prompt_.add_control(token);
      return;
    }
    if (!is_user_like(m.role)) return;
    prompt_.add_control(kAssistant);
    bool open = thinking_ && (!drop_ || static_cast<int>(i) >= last_user_);
    prompt_.add_control(open ? kThink : kEndThink);
  }

  std::vector<Turn> turns_;
  const RenderOptions& options_;
  bool thinking_ = false;
  bool drop_ = false;
  int last_user_ = -1;
  Prompt prompt_;
};

}  // namespace

Prompt render_prompt(const std::vector<Message>& messages, const RenderOptions& options) {
  std::vector<Turn> turns = fold(messages);
  sort_tool_results(turns);
  return Renderer(std::move(turns), options).render();
}

std::string render_text(const std::vector<Message>& messages, const RenderOptions& options) {
  return render_prompt(messages, options).text();
}

}  // namespace magnetar::chat
