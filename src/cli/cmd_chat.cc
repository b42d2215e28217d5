// `magnetar chat`: a multi-turn REPL on one live session.
//
// Each answer continues the same session, so history is never prefilled twice. Line editing and
// history come from libedit (history in ~/.magnetar/chat_history). Conversations are saved under
// ~/.magnetar/sessions (MAGNETAR_HOME replaces ~/.magnetar) with their whole model state, so
// /load resumes them without any prefill.
//
// Ctrl+C: during a prefill or a generation it stops that turn and returns to the prompt; at the
// prompt, a second Ctrl+C in a row exits (as does Ctrl+D or /quit).
#include <editline/readline.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "cli/cli_format.h"
#include "cli/commands.h"
#include "cli/generation_flags.h"
#include "kvcache/file_io.h"

namespace magnetar::cli {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kHelp =
    "Commands:\n"
    "  /help            this text\n"
    "  /think           thinking mode, high effort\n"
    "  /think-max       thinking mode, maximum effort\n"
    "  /nothink         answer without thinking\n"
    "  /ctx [N]         show the context use, or set the context size to N tokens\n"
    "  /read FILE       send the file's contents as your message\n"
    "  /save NAME       save the conversation (with its model state) under NAME\n"
    "  /load NAME       resume a saved conversation, without any prefill\n"
    "  /list            list saved conversations\n"
    "  /new             start a new conversation\n"
    "  /quit            exit (also Ctrl+D, or Ctrl+C twice at the prompt)\n"
    "Ctrl+C during an answer stops it.\n";

fs::path magnetar_home() {
  if (const char* home = std::getenv("MAGNETAR_HOME"); home != nullptr && *home != '\0') {
    return home;
  }
  const char* user_home = std::getenv("HOME");
  return fs::path(user_home != nullptr && *user_home != '\0' ? user_home : ".") / ".magnetar";
}

// Session names become file names: letters, digits, '.', '_' and '-', not starting with '.'.
bool valid_session_name(const std::string& name) {
  static const std::regex kName("[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}");
  return std::regex_match(name, kName);
}

// libedit's character reader. A Ctrl+C that lands after the prompt is drawn but before a plain
// read() would start blocking would be noticed only at the next key; so SIGINT stays blocked
// except inside ppoll(), which checks the flag and waits atomically. EOF makes readline() return
// nullptr, which the REPL reads as Ctrl+C when the flag is set.
int read_key(FILE* in) {
  sigset_t sigint, wait_mask;
  sigemptyset(&sigint);
  sigaddset(&sigint, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigint, &wait_mask);
  sigdelset(&wait_mask, SIGINT);
  int result = EOF;
  for (;;) {
    if (interrupted()) break;
    pollfd p{fileno(in), POLLIN, 0};
    const int ready = ppoll(&p, 1, nullptr, &wait_mask);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) break;
    unsigned char c;
    const ssize_t n = ::read(fileno(in), &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n == 1) result = c;
    break;
  }
  pthread_sigmask(SIG_UNBLOCK, &sigint, nullptr);
  return result;
}

std::vector<uint8_t> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path.string() + ": cannot read");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class ChatRepl {
 public:
  explicit ChatRepl(const GenerationFlags& flags)
      : flags_(flags), sessions_dir_(magnetar_home() / "sessions") {
    engine_ = open_engine(flags_, flags_.context);
    conversation_ = std::make_unique<engine::Conversation>(*engine_, flags_.system);
    apply_thinking_flags(flags_, *conversation_);
  }

  int run();

 private:
  // Runs one command line; false to exit.
  bool command(const std::string& line);
  void turn(const std::string& text);
  void set_context(const std::string& arg);
  void save(const std::string& name);
  void load(const std::string& name);
  void list() const;
  void say_mode() const;

  GenerationFlags flags_;
  fs::path sessions_dir_;
  std::unique_ptr<engine::Engine> engine_;
  std::unique_ptr<engine::Conversation> conversation_;
};

int ChatRepl::run() {
  const fs::path history = magnetar_home() / "chat_history";
  std::error_code ec;
  fs::create_directories(history.parent_path(), ec);
  // Before the first libedit call: libedit's using_history() initializes its readline layer,
  // which reads these settings only then. libedit's own SIGINT handler stays out: it re-raises
  // the signal with kill() from inside the handler, and a Ctrl+C typed at the prompt was lost
  // in that dance now and then; read_key() and our flag handle Ctrl+C alone.
  rl_getc_function = read_key;
  rl_catch_signals = 0;
  install_interrupt_handler();
  using_history();
  stifle_history(1000);
  read_history(history.c_str());

  fmt::print("magnetar chat: {} ({} backend, context {} tokens). /help lists the commands.\n",
             flags_.model, engine_->backend_name(), thousands(engine_->context()));
  warn_if_think_max_context_is_short(*conversation_);
  bool interrupted_at_prompt = false;
  for (;;) {
    interrupted() = false;
    char* raw = readline("magnetar> ");
    if (raw == nullptr) {
      if (!interrupted()) break;  // Ctrl+D
      if (interrupted_at_prompt) break;
      interrupted_at_prompt = true;
      fmt::print("\n(Ctrl+C again to exit)\n");
      continue;
    }
    interrupted_at_prompt = false;
    std::string line(raw);
    std::free(raw);
    line.erase(0, line.find_first_not_of(" \t"));
    line.erase(line.find_last_not_of(" \t\r\n") + 1);
    if (line.empty()) continue;
    add_history(line.c_str());
    write_history(history.c_str());
    if (!command(line)) break;
  }
  fmt::print("\n");
  return kExitOk;
}

bool ChatRepl::command(const std::string& line) {
  if (line[0] != '/') {
    turn(line);
    return true;
  }
  const size_t space = line.find(' ');
  const std::string name = line.substr(0, space);
  std::string arg = space == std::string::npos ? "" : line.substr(space + 1);
  arg.erase(0, arg.find_first_not_of(" \t"));
  try {
    if (name == "/quit" || name == "/exit") return false;
    if (name == "/help") {
      fmt::print("{}", kHelp);
    } else if (name == "/think") {
      conversation_->set_thinking(chat::ThinkingMode::kThinking, chat::ReasoningEffort::kHigh);
      say_mode();
    } else if (name == "/think-max") {
      conversation_->set_thinking(chat::ThinkingMode::kThinking, chat::ReasoningEffort::kMax);
      say_mode();
      warn_if_think_max_context_is_short(*conversation_);
    } else if (name == "/nothink") {
      conversation_->set_thinking(chat::ThinkingMode::kChat, chat::ReasoningEffort::kHigh);
      say_mode();
    } else if (name == "/ctx") {
      set_context(arg);
    } else if (name == "/read") {
      if (arg.empty()) throw std::invalid_argument("/read needs a file");
      const std::vector<uint8_t> bytes = read_file(arg);
      turn(std::string(bytes.begin(), bytes.end()));
    } else if (name == "/save") {
      save(arg);
    } else if (name == "/load") {
      load(arg);
    } else if (name == "/list") {
      list();
    } else if (name == "/new") {
      conversation_->clear();
      fmt::print("New conversation.\n");
    } else {
      fmt::print(stderr, "unknown command {}; /help lists the commands\n", name);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
  }
  return true;
}

void ChatRepl::turn(const std::string& text) {
  ProgressBar bar;
  TextPrinter printer(stdout);
  engine::TurnCallbacks callbacks;
  callbacks.progress = [&](int64_t done, int64_t total) { bar.update(done, total); };
  callbacks.text = [&](std::string_view piece, bool reasoning) {
    bar.clear();
    printer.write(piece, reasoning);
  };
  interrupted() = false;
  engine::TurnStats stats;
  try {
    stats = conversation_->reply(text, turn_options(flags_), callbacks, &interrupted());
  } catch (const engine::ContextOverflow& e) {
    bar.clear();
    fmt::print(stderr, "error: {}; /new starts over, /ctx N enlarges the context\n", e.what());
    return;
  }
  bar.clear();
  printer.finish();
  if (stats.undone) {
    fmt::print(stderr, "(stopped; the message was not sent)\n");
    return;
  }
  if (stats.finish == engine::FinishReason::kCancelled) fmt::print(stderr, "(stopped)\n");
  print_turn_stats(stats);
}

void ChatRepl::set_context(const std::string& arg) {
  if (arg.empty()) {
    fmt::print("context: {} of {} tokens used\n", thousands(conversation_->tokens_used()),
               thousands(engine_->context()));
    return;
  }
  int64_t size = 0;
  try {
    size_t used = 0;
    size = std::stoll(arg, &used);
    if (used != arg.size() || size <= 0) throw std::invalid_argument(arg);
  } catch (const std::exception&) {
    throw std::invalid_argument("/ctx needs a positive number of tokens");
  }
  if (size < conversation_->tokens_used()) {
    throw std::invalid_argument(fmt::format("the conversation already holds {} tokens; /new first",
                                            conversation_->tokens_used()));
  }
  // The engine sizes its state from the context, so it is opened again; the conversation moves
  // over as bytes, without prefill.
  const std::vector<uint8_t> saved = conversation_->save();
  std::unique_ptr<engine::Engine> engine = open_engine(flags_, size);
  auto conversation = std::make_unique<engine::Conversation>(*engine, flags_.system);
  conversation->load(saved);
  conversation_ = std::move(conversation);
  engine_ = std::move(engine);
  fmt::print("context: {} tokens\n", thousands(size));
  warn_if_think_max_context_is_short(*conversation_);
}

void ChatRepl::save(const std::string& name) {
  if (!valid_session_name(name)) {
    throw std::invalid_argument("/save needs a name of letters, digits, '.', '_' or '-'");
  }
  fs::create_directories(sessions_dir_);
  const fs::path path = sessions_dir_ / (name + ".session");
  const std::vector<uint8_t> bytes = conversation_->save();
  // Crash-safe (temp file, fsync, rename, directory fsync): a failed save leaves an older save of
  // the same name intact.
  const std::span<const uint8_t> pieces[] = {bytes};
  const std::string warning =
      kvcache::write_file_atomically(sessions_dir_, path.filename(), name + ".session.tmp", pieces);
  if (!warning.empty()) fmt::print(stderr, "warning: {}\n", warning);
  fmt::print("saved {} ({} tokens, {})\n", path.string(), thousands(conversation_->tokens_used()),
             human_bytes(bytes.size()));
}

void ChatRepl::load(const std::string& name) {
  if (!valid_session_name(name)) throw std::invalid_argument("/load needs a saved name (/list)");
  const fs::path path = sessions_dir_ / (name + ".session");
  if (!fs::exists(path)) throw std::invalid_argument("no saved conversation named " + name);
  conversation_->load(read_file(path));
  const size_t turns =
      std::count_if(conversation_->messages().begin(), conversation_->messages().end(),
                    [](const chat::Message& m) { return m.role == chat::Role::kUser; });
  fmt::print("loaded {}: {} turns, {} tokens, no prefill needed\n", name, turns,
             thousands(conversation_->tokens_used()));
  say_mode();
}

void ChatRepl::list() const {
  std::error_code ec;
  std::vector<std::pair<std::string, uintmax_t>> found;
  for (const fs::directory_entry& e : fs::directory_iterator(sessions_dir_, ec)) {
    if (e.path().extension() == ".session") found.emplace_back(e.path().stem(), e.file_size(ec));
  }
  std::sort(found.begin(), found.end());
  if (found.empty()) fmt::print("no saved conversations in {}\n", sessions_dir_.string());
  for (const auto& [name, size] : found) fmt::print("  {}  ({})\n", name, human_bytes(size));
}

void ChatRepl::say_mode() const {
  const char* mode = conversation_->mode() == chat::ThinkingMode::kChat ? "off"
                     : conversation_->thinking_max()                    ? "max"
                                                                        : "high";
  fmt::print("thinking: {}\n", mode);
}

}  // namespace

Command add_chat_command(CLI::App& root) {
  auto flags = std::make_shared<GenerationFlags>();
  CLI::App* app = root.add_subcommand("chat", "Chat with the model (a REPL; /help for commands)");
  add_generation_flags(*app, *flags);
  return {app, [flags] { return ChatRepl(*flags).run(); }};
}

}  // namespace magnetar::cli
