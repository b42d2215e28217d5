#include "server/http_server.h"

#include <httplib.h>
#include <openssl/crypto.h>

#include <filesystem>

#include "server/anthropic_api.h"
#include "server/json_text.h"
#include "server/log.h"
#include "server/openai_api.h"
#include "server/responses_api.h"

namespace magnetar::server {
namespace {

using Clock = std::chrono::steady_clock;

ApiFlavor flavor_of(const std::string& path) {
  return path.starts_with("/v1/messages") ? ApiFlavor::kAnthropic : ApiFlavor::kOpenAI;
}

void send_error(httplib::Response& res, ApiFlavor flavor, const ApiError& e) {
  res.status = e.status();
  if (e.status() == 429) res.set_header("Retry-After", "1");
  res.set_content(error_body(flavor, e), "application/json");
}

// The request field that holds the conversation or prompt.
const char* prompt_param(Endpoint endpoint) {
  switch (endpoint) {
    case Endpoint::kCompletions:
      return "prompt";
    case Endpoint::kResponses:
      return "input";
    default:
      return "messages";
  }
}

// The error a kFailed event stands for.
ApiError failure_error(const Event& e, const Job& job, int64_t context) {
  if (e.code == "context_length_exceeded") {
    return context_error(e.usage.prompt_tokens, context, prompt_param(job.request.endpoint));
  }
  return ApiError(e.status, e.text, e.code);
}

// The error event of a stream whose status is already sent.
std::string stream_failure(ApiFlavor flavor, const std::string& message) {
  Json error = stream_error_object(flavor, message);
  return flavor == ApiFlavor::kAnthropic ? sse(error, "error") : sse(error);
}

const char* endpoint_label(const std::string& path) {
  static const char* const kKnown[] = {
      "/health",         "/metrics",      "/v1/models",   "/v1/chat/completions",
      "/v1/completions", "/v1/responses", "/v1/messages", "/v1/messages/count_tokens"};
  for (const char* p : kKnown) {
    if (path == p) return p;
  }
  if (path.starts_with("/v1/models/")) return "/v1/models/{id}";
  return "other";
}

bool equal_secret(const std::string& given, const std::string& key) {
  return given.size() == key.size() && CRYPTO_memcmp(given.data(), key.data(), key.size()) == 0;
}

}  // namespace

HttpServer::HttpServer(const HttpOptions& options, const ApiContext& api, Scheduler& scheduler,
                       Metrics& metrics)
    : options_(options), api_(api), scheduler_(scheduler), metrics_(metrics) {
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    throw std::runtime_error("--tls-cert and --tls-key go together");
  }
  if (!options.tls_cert.empty()) {
    for (const std::string& f : {options.tls_cert, options.tls_key}) {
      if (!std::filesystem::exists(f)) throw std::runtime_error("cannot read " + f);
    }
    auto tls =
        std::make_unique<httplib::SSLServer>(options.tls_cert.c_str(), options.tls_key.c_str());
    if (!tls->is_valid()) {
      throw std::runtime_error("cannot use the TLS certificate " + options.tls_cert + " and key " +
                               options.tls_key + " (unreadable, or they do not match)");
    }
    server_ = std::move(tls);
  } else {
    server_ = std::make_unique<httplib::Server>();
  }
  const int threads = std::max(4, options.threads);
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_payload_max_length(options.max_body_bytes);
  server_->set_keep_alive_timeout(5);
  server_->set_keep_alive_max_count(1000);
  if (options.cors) {
    server_->set_default_headers({{"Access-Control-Allow-Origin", "*"},
                                  {"Access-Control-Allow-Methods", "GET, POST, OPTIONS"},
                                  {"Access-Control-Allow-Headers", "*"}});
  }
  install_routes();
}

HttpServer::~HttpServer() = default;

int HttpServer::bind() {
  if (options_.port == 0) {
    int port = server_->bind_to_any_port(options_.host);
    if (port <= 0) throw std::runtime_error("cannot listen on " + options_.host);
    return port;
  }
  if (!server_->bind_to_port(options_.host, options_.port)) {
    throw std::runtime_error("cannot listen on " + options_.host + ":" +
                             std::to_string(options_.port) + " (address in use, or not local)");
  }
  return options_.port;
}

bool HttpServer::serve() { return server_->listen_after_bind(); }

void HttpServer::stop() { server_->stop(); }

bool HttpServer::authorized(const httplib::Request& req) const {
  if (options_.api_key.empty()) return true;
  const std::string bearer = req.get_header_value("Authorization");
  if (bearer.starts_with("Bearer ") && equal_secret(bearer.substr(7), options_.api_key)) {
    return true;
  }
  return req.has_header("x-api-key") &&
         equal_secret(req.get_header_value("x-api-key"), options_.api_key);
}

Json HttpServer::model_object(const std::string& id) const {
  return {{"id", id},
          {"object", "model"},
          {"created", 1767225600},
          {"owned_by", "magnetar"},
          {"context_length", api_.context},
          {"max_completion_tokens", std::min(api_.max_tokens_limit, api_.context)}};
}

void HttpServer::install_routes() {
  httplib::Server& s = *server_;
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.method == "OPTIONS" && options_.cors)
      return httplib::Server::HandlerResponse::Unhandled;
    if (authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
    const bool anthropic = flavor_of(req.path) == ApiFlavor::kAnthropic;
    send_error(res, flavor_of(req.path),
               ApiError(401,
                        anthropic ? "missing or invalid x-api-key"
                                  : "missing or invalid API key (Authorization: Bearer KEY)",
                        "invalid_api_key"));
    return httplib::Server::HandlerResponse::Handled;
  });
  s.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req,
                                                                  httplib::Response& res) {
    if (!res.body.empty() || res.content_provider_) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    std::string message;
    switch (res.status) {
      case 404:
        message = "unknown endpoint: " + req.method + " " + req.path;
        break;
      case 413:
        message =
            "the request body is larger than " + std::to_string(options_.max_body_bytes) + " bytes";
        break;
      case 400:
        message = "bad HTTP request";
        break;
      default:
        message = "HTTP " + std::to_string(res.status);
    }
    res.set_content(error_body(flavor_of(req.path), ApiError(res.status, message)),
                    "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  s.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "internal error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        log("{} {}: {}", req.method, req.path, what);
        send_error(res, flavor_of(req.path), ApiError(500, what));
      });
  s.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    metrics_.count_request(endpoint_label(req.path), res.status);
  });
  if (options_.cors) {
    s.Options(".*", [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
  }
  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(json_text({{"status", "ok"},
                               {"model", api_.models.id},
                               {"queue_depth", scheduler_.queue_depth()}}),
                    "application/json");
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_.render(), "text/plain; version=0.0.4");
  });
  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(
        json_text({{"object", "list"}, {"data", Json::array({model_object(api_.models.id)})}}),
        "application/json");
  });
  s.Get(R"(/v1/models/(.+))", [this](const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    const auto& aliases = api_.models.aliases;
    if (id != api_.models.id && id != "deepseek-chat" && id != "deepseek-reasoner" &&
        std::find(aliases.begin(), aliases.end(), id) == aliases.end()) {
      send_error(res, ApiFlavor::kOpenAI,
                 ApiError(404, "the model '" + id + "' does not exist", "model_not_found"));
      return;
    }
    res.set_content(json_text(model_object(id)), "application/json");
  });
  const std::pair<const char*, Endpoint> generating[] = {
      {"/v1/chat/completions", Endpoint::kChatCompletions},
      {"/v1/completions", Endpoint::kCompletions},
      {"/v1/responses", Endpoint::kResponses},
      {"/v1/messages", Endpoint::kMessages}};
  for (const auto& [path, endpoint] : generating) {
    Endpoint e = endpoint;
    s.Post(path, [this, e](const httplib::Request& req, httplib::Response& res) {
      generate(req, res, e);
    });
  }
  s.Post("/v1/messages/count_tokens", [this](const httplib::Request& req, httplib::Response& res) {
    try {
      res.set_content(count_message_tokens(parse_request_body(req.body), api_), "application/json");
    } catch (const ApiError& e) {
      send_error(res, ApiFlavor::kAnthropic, e);
    } catch (const nlohmann::json::exception& e) {
      send_error(res, ApiFlavor::kAnthropic,
                 bad_request(std::string("a request field has the wrong JSON type: ") + e.what()));
    }
  });
}

Prepared HttpServer::prepare(Endpoint endpoint, const Json& body) const {
  switch (endpoint) {
    case Endpoint::kChatCompletions:
      return prepare_chat_completion(body, api_);
    case Endpoint::kCompletions:
      return prepare_completion(body, api_);
    case Endpoint::kResponses:
      return prepare_response(body, api_);
    case Endpoint::kMessages:
      return prepare_message(body, api_);
  }
  throw std::logic_error("unknown endpoint");
}

void HttpServer::generate(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
  const ApiFlavor flavor = flavor_of(req.path);
  try {
    Json body = parse_request_body(req.body);
    Prepared p;
    try {
      p = prepare(endpoint, body);
    } catch (const nlohmann::json::exception& e) {
      // A member of an unexpected JSON type deep inside the request (e.g. a numeric "type").
      throw bad_request(std::string("a request field has the wrong JSON type: ") + e.what());
    }
    auto job = std::make_shared<Job>(std::move(p.job));
    switch (scheduler_.submit(job)) {
      case Scheduler::Submit::kQueueFull:
        metrics_.count_rejected("queue_full");
        throw ApiError(429, "the server is busy: too many requests are waiting; retry later",
                       "rate_limit_exceeded");
      case Scheduler::Submit::kShuttingDown:
        metrics_.count_rejected("shutting_down");
        throw ApiError(503, "the server is shutting down");
      case Scheduler::Submit::kQueued:
        break;
    }
    std::shared_ptr<Responder> responder(std::move(p.responder));
    if (p.stream) {
      stream_events(job, std::move(responder), flavor, res);
    } else {
      wait_for_result(job, std::move(responder), flavor, res);
    }
  } catch (const ApiError& e) {
    send_error(res, flavor, e);
  }
}

void HttpServer::wait_for_result(const std::shared_ptr<Job>& job,
                                 std::shared_ptr<Responder> responder, ApiFlavor flavor,
                                 httplib::Response& res) {
  const auto deadline = Clock::now() + options_.keepalive;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) break;
    std::optional<Event> e = job->events.pop(left);
    if (!e) break;
    if (e->kind == Event::Kind::kFailed) throw failure_error(*e, *job, api_.context);
    if (e->kind != Event::Kind::kDone) continue;
    if (e->result->finish == FinishReason::kError) throw ApiError(500, e->result->error);
    res.set_content(responder->body(*e->result), "application/json");
    return;
  }
  // Slow: commit the status and keep the connection busy until the result comes. Deltas also
  // arrive here (the scheduler does not know the client does not stream); they are skipped, and
  // a heartbeat goes out whenever nothing was written for a keepalive interval.
  struct State {
    bool finished = false;
    Clock::time_point last_write = Clock::now();
  };
  auto state = std::make_shared<State>();
  const auto keepalive = options_.keepalive;
  const int64_t context = api_.context;
  // The charset parameter keeps cpp-httplib from gzipping the body (it compresses exactly
  // "application/json"), which would buffer the heartbeats instead of sending them.
  res.set_chunked_content_provider(
      "application/json; charset=utf-8",
      [job, responder, state, keepalive, flavor, context](size_t, httplib::DataSink& sink) {
        for (;;) {
          auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
              keepalive - (Clock::now() - state->last_write));
          if (wait.count() <= 0) {
            state->last_write = Clock::now();
            return sink.write(" ", 1);
          }
          std::optional<Event> e = job->events.pop(wait);
          if (!e || (e->kind != Event::Kind::kDone && e->kind != Event::Kind::kFailed)) continue;
          const std::string text = e->kind == Event::Kind::kDone
                                       ? responder->body(*e->result)
                                       : error_body(flavor, failure_error(*e, *job, context));
          if (!sink.write(text.data(), text.size())) return false;
          state->finished = true;
          sink.done();
          return true;
        }
      },
      [job, state](bool) {
        if (!state->finished) job->cancelled = true;
      });
}

void HttpServer::stream_events(const std::shared_ptr<Job>& job,
                               std::shared_ptr<Responder> responder, ApiFlavor flavor,
                               httplib::Response& res) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  struct State {
    bool opened = false;
    bool finished = false;
  };
  auto state = std::make_shared<State>();
  const auto keepalive = options_.keepalive;
  res.set_chunked_content_provider(
      "text/event-stream",
      [job, responder, state, keepalive, flavor](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& text) {
          return text.empty() || sink.write(text.data(), text.size());
        };
        if (!state->opened) {
          state->opened = true;
          return write(responder->stream_open());
        }
        std::optional<Event> e = job->events.pop(keepalive);
        if (!e) return write(responder->stream_keepalive());
        if (e->kind == Event::Kind::kFailed || e->kind == Event::Kind::kDone) {
          std::string text = e->kind == Event::Kind::kFailed ? stream_failure(flavor, e->text)
                                                             : responder->stream_close(*e->result);
          if (!write(text)) return false;
          state->finished = true;
          sink.done();
          return true;
        }
        return write(responder->stream_event(*e));
      },
      [job, state](bool) {
        if (!state->finished) job->cancelled = true;
      });
}

}  // namespace magnetar::server
