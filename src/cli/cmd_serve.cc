// `magnetar serve`: the OpenAI / Anthropic / Responses-compatible HTTP server (docs/server.md).
//
// Wiring only: the engine, the live sessions and scheduler, the HTTP layer (src/server), and
// signals. The first SIGINT/SIGTERM stops accepting connections, lets running generations end
// with an error, offers the live sessions to the state store (the disk KV cache with
// --kv-disk-dir) and exits 0; a second one exits 130 at once.
#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "engine/engine.h"
#include "gguf/gguf_reader.h"
#include "kvcache/checkpoint_policy.h"
#include "kvcache/tool_id_map.h"
#include "model/model_config.h"
#include "server/disk_state_store.h"
#include "server/forced_completions.h"
#include "server/http_server.h"
#include "server/log.h"
#include "server/scheduler.h"
#include "server/session_memory.h"
#include "server/state_store.h"

namespace magnetar::cli {
namespace {

struct ServeOptions {
  std::string model;
  std::string backend = "auto";
  unsigned threads = 0;
  int64_t context = 32768;
  int64_t prefill_chunk = 512;
  int parallel = 1;
  int max_queue = 64;
  int http_threads = 0;
  int64_t max_tokens = 32768;
  int64_t max_tokens_limit = 0;
  double max_body_mb = 16;
  double keepalive_seconds = 5;
  std::string model_id;
  std::vector<std::string> model_aliases;
  size_t tool_memory_max_ids = 100000;
  bool no_exact_replay = false;
  std::string kv_disk_dir;
  int64_t kv_disk_space_mb = 4096;
  kvcache::CheckpointOptions checkpoints;
  std::string forced_completion;
  bool quiet = false;
  server::HttpOptions http;
};

// The disk KV cache flags (server-api.md §2 names and defaults; docs/server.md). The --kv-cache-*
// values only matter with --kv-disk-dir, so they require it.
void add_kv_cache_options(CLI::App& app, ServeOptions& o) {
  CLI::Option* dir = app.add_option("--kv-disk-dir", o.kv_disk_dir,
                                    "Keep KV checkpoints in this directory (created, mode 0700): "
                                    "long prefixes survive session changes and restarts");
  app.add_option("--kv-disk-space-mb", o.kv_disk_space_mb, "Disk budget of the KV cache (MiB)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30))
      ->capture_default_str()
      ->needs(dir);
  kvcache::CheckpointOptions& c = o.checkpoints;
  app.add_option("--kv-cache-min-tokens", c.min_tokens,
                 "Never save or load checkpoints shorter than this")
      ->check(CLI::PositiveNumber)
      ->capture_default_str()
      ->needs(dir);
  app.add_option("--kv-cache-cold-max-tokens", c.cold_max_tokens,
                 "Checkpoint new prompts of min..N tokens; longer loaded checkpoints are consumed "
                 "(0: neither)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str()
      ->needs(dir);
  app.add_option("--kv-cache-continued-interval-tokens", c.continued_interval_tokens,
                 "Checkpoint every N tokens of prefill and decode, rounded up to the alignment "
                 "(0: off)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str()
      ->needs(dir);
  app.add_option("--kv-cache-boundary-trim-tokens", c.boundary_trim_tokens,
                 "Tokens left off the end of a cold checkpoint")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str()
      ->needs(dir);
  app.add_option("--kv-cache-boundary-align-tokens", c.boundary_align_tokens,
                 "Alignment of cold and continued checkpoints (0: none)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str()
      ->needs(dir);
}

// deepseek-v4-pro for Pro's width, deepseek-v4-flash otherwise (the tiny test models included).
std::string default_model_id(const model::ModelConfig& config) {
  return config.n_embd >= 7168 ? "deepseek-v4-pro" : "deepseek-v4-flash";
}

int run_serve(ServeOptions o) {
  if (o.http.api_key.empty()) {
    if (const char* key = std::getenv("MAGNETAR_API_KEY")) o.http.api_key = key;
  }
  server::set_requests_quiet(o.quiet);
  if (!o.kv_disk_dir.empty()) {  // inconsistent --kv-cache-* values fail before the model loads
    try {
      (void)kvcache::CheckpointPolicy(o.checkpoints);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("invalid --kv-cache-* values: ") + e.what());
    }
  }
  // Writes to a departed client must fail with EPIPE, not kill the process; SIGINT/SIGTERM are
  // taken by one thread (sigwait), so they are blocked before any other thread starts.
  ::signal(SIGPIPE, SIG_IGN);
  // A file size limit (RLIMIT_FSIZE) must fail a cache write with EFBIG, not kill the server.
  ::signal(SIGXFSZ, SIG_IGN);
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  const model::ModelConfig config =
      model::ModelConfig::from_metadata(gguf::GgufFile::open(o.model).metadata());
  int64_t context = o.context;
  if (config.n_ctx_train > 0) context = std::min<int64_t>(context, config.n_ctx_train);
  engine::EngineOptions eo;
  eo.model = o.model;
  eo.backend = o.backend;
  eo.threads = o.threads;
  eo.context = context;
  eo.prefill_chunk = o.prefill_chunk;
  engine::Engine engine(eo);
  if (engine.backend_name() == "cpu") {
    const uint64_t need = server::session_state_bytes(config, context) * o.parallel;
    std::optional<uint64_t> available = server::available_memory_bytes();
    if (available && need > *available) {
      throw std::invalid_argument(fmt::format(
          "--parallel {} needs up to {:.1f} GiB of session state at a context of {} tokens, "
          "but only {:.1f} GiB of memory is available (lower --parallel or --ctx)",
          o.parallel, need / 1073741824.0, context, *available / 1073741824.0));
    }
  }

  std::unique_ptr<server::ForcedCompletions> forced;
  if (!o.forced_completion.empty()) {
    forced = std::make_unique<server::ForcedCompletions>(o.forced_completion, engine.tokenizer());
    server::log("TEST-ONLY --test-forced-completion {}: matching requests do not sample",
                o.forced_completion);
  }
  server::Metrics metrics;
  kvcache::ToolIdMap tools({.max_ids = o.tool_memory_max_ids});
  std::unique_ptr<server::StateStore> store;
  if (o.kv_disk_dir.empty()) {
    store = std::make_unique<server::NullStateStore>();
  } else {
    try {
      store = std::make_unique<server::DiskStateStore>(
          server::DiskStoreOptions{.dir = o.kv_disk_dir,
                                   .budget_bytes = static_cast<uint64_t>(o.kv_disk_space_mb) << 20,
                                   .checkpoints = o.checkpoints},
          engine, o.no_exact_replay ? nullptr : &tools, metrics);
    } catch (const kvcache::KvCacheError& e) {
      throw std::runtime_error("--kv-disk-dir " + o.kv_disk_dir + " cannot be used: " + e.what());
    }
  }
  server::SchedulerOptions so;
  so.parallel = o.parallel;
  so.max_queue = o.max_queue;
  so.chunk = o.prefill_chunk;
  so.exact_replay = !o.no_exact_replay;
  server::Scheduler scheduler(engine, so, *store, tools, metrics);

  server::ApiContext api;
  api.tokenizer = &engine.tokenizer();
  api.context = context;
  api.max_tokens_limit = o.max_tokens_limit > 0 ? o.max_tokens_limit : context;
  api.default_max_tokens = o.max_tokens;
  api.models.id = o.model_id.empty() ? default_model_id(config) : o.model_id;
  api.models.aliases = o.model_aliases;
  api.replay = o.no_exact_replay ? nullptr : &tools;
  api.store = store.get();
  api.forced = forced.get();

  o.http.max_body_bytes = static_cast<size_t>(o.max_body_mb * 1048576.0);
  o.http.keepalive = std::chrono::milliseconds(static_cast<int64_t>(o.keepalive_seconds * 1000));
  o.http.threads = o.http_threads > 0 ? o.http_threads : o.parallel + o.max_queue + 16;
  server::HttpServer http(o.http, api, scheduler, metrics);
  const int port = http.bind();
  server::log("model {} ({} backend), context {} tokens, {} live session(s), queue {}",
              api.models.id, engine.backend_name(), context, o.parallel, o.max_queue);
  server::log("listening on {}://{}:{}{}", o.http.tls_cert.empty() ? "http" : "https", o.http.host,
              port, o.http.api_key.empty() ? "" : " (API key required)");

  std::thread([&http, stop_signals] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    server::log("signal {}: shutting down (again to exit at once)", signal);
    http.stop();
    sigwait(&stop_signals, &signal);
    _exit(130);
  }).detach();
  const bool served = http.serve();
  scheduler.shutdown();
  server::log("stopped");
  return served ? kExitOk : kExitError;
}

}  // namespace

Command add_serve_command(CLI::App& root) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* app = root.add_subcommand(
      "serve", "Serve the model over HTTP (OpenAI chat/completions/responses, Anthropic messages)");
  app->add_option("-m,--model", o->model, "GGUF model")->required()->check(CLI::ExistingFile);
  app->add_option("--backend", o->backend, "cpu, cuda or auto")->capture_default_str();
  app->add_option("-t,--threads", o->threads, "CPU threads (default: all)");
  app->add_option("-c,--ctx", o->context, "Context size in tokens (at most the model's)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--prefill-chunk", o->prefill_chunk, "Prompt tokens per session per engine step")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--host", o->http.host, "Address to bind (use 0.0.0.0 to expose it)")
      ->capture_default_str();
  app->add_option("--port", o->http.port, "Port (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  app->add_option("--api-key", o->http.api_key,
                  "Require this key on every request (default: $MAGNETAR_API_KEY)");
  app->add_flag("--cors", o->http.cors, "Allow browsers from any origin (CORS headers)");
  app->add_option("--tls-cert", o->http.tls_cert, "TLS certificate (PEM); needs --tls-key");
  app->add_option("--tls-key", o->http.tls_key, "TLS private key (PEM); needs --tls-cert");
  app->add_option("--parallel", o->parallel, "Live sessions, decoded together in one batch")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app->add_option("--max-queue", o->max_queue,
                  "Requests that may wait for a session; more are answered 429")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app->add_option("--http-threads", o->http_threads,
                  "Connection threads (default: parallel + max-queue + 16)")
      ->check(CLI::NonNegativeNumber);
  app->add_option("-n,--max-tokens", o->max_tokens, "Generation limit of requests that give none")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--max-tokens-limit", o->max_tokens_limit,
                  "The most tokens a request may generate (default: the context)")
      ->check(CLI::PositiveNumber);
  app->add_option("--max-body-mb", o->max_body_mb, "Largest request body (MiB); larger: 413")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_option("--keepalive-seconds", o->keepalive_seconds,
                  "Interval of stream keepalives and non-streaming heartbeats")
      ->check(CLI::Range(0.05, 600.0))
      ->capture_default_str();
  app->add_option("--model-id", o->model_id,
                  "Model id served (default: deepseek-v4-flash or deepseek-v4-pro)");
  app->add_option("--model-alias", o->model_aliases,
                  "Another model name requests may use (repeatable)");
  app->add_option("--tool-memory-max-ids", o->tool_memory_max_ids,
                  "Tool-call ids kept for exact DSML replay")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app->add_flag("--disable-exact-dsml-tool-replay", o->no_exact_replay,
                "Render tool calls in history canonically, never from the sampled bytes");
  add_kv_cache_options(*app, *o);
  app->add_option("--test-forced-completion", o->forced_completion,
                  "TEST-ONLY: JSON {trigger: completion}; matching requests are forced to the "
                  "completion instead of sampling (docs/server.md)")
      ->check(CLI::ExistingFile);
  app->add_flag("--quiet", o->quiet, "No log line per request on stderr");
  return {app, [o] { return run_serve(*o); }};
}

}  // namespace magnetar::cli
