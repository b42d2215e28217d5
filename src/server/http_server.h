// The HTTP layer of `magnetar serve` (cpp-httplib): routes, authentication, CORS, limits, error
// bodies, and the delivery of scheduler events to clients.
//
// Endpoints: GET /health, GET /metrics, GET /v1/models, GET /v1/models/{id}, POST
// /v1/chat/completions, /v1/completions, /v1/responses, /v1/messages,
// /v1/messages/count_tokens. With an API key, every request must carry it (Authorization:
// Bearer KEY, or x-api-key: KEY), CORS preflights excepted. Errors use the body shape of the API
// called (Anthropic's under /v1/messages, OpenAI's elsewhere).
//
// A generating request is parsed, rendered and tokenised on its connection thread, then queued.
// Streaming responses start at once (so a client that leaves while queued is noticed by the
// keepalive writes and its job dropped) and deliver every event as it comes. Non-streaming
// responses wait for the result; if it takes longer than the keepalive interval, the 200 status
// is committed and a space is written every interval (leading whitespace is valid JSON) so that
// clients do not time out during a long prefill and a departed client is noticed. A failed write
// cancels the job.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "server/api_common.h"
#include "server/metrics.h"
#include "server/scheduler.h"

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace magnetar::server {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8000;      // 0: any free port
  std::string api_key;  // empty: no authentication
  bool cors = false;
  std::string tls_cert, tls_key;  // both or neither
  size_t max_body_bytes = 16u << 20;
  int threads = 64;  // connection threads (each open connection holds one)
  std::chrono::milliseconds keepalive{5000};
};

class HttpServer {
 public:
  // Throws std::runtime_error for unusable TLS files.
  HttpServer(const HttpOptions& options, const ApiContext& api, Scheduler& scheduler,
             Metrics& metrics);
  ~HttpServer();

  // Binds the listening socket; returns the port. Throws std::runtime_error when it cannot.
  int bind();
  // Serves until stop(); returns false when listening failed.
  bool serve();
  void stop();

 private:
  void install_routes();
  Prepared prepare(Endpoint endpoint, const Json& body) const;
  void generate(const httplib::Request& request, httplib::Response& response, Endpoint endpoint);
  void wait_for_result(const std::shared_ptr<Job>& job, std::shared_ptr<Responder> responder,
                       ApiFlavor flavor, httplib::Response& response);
  void stream_events(const std::shared_ptr<Job>& job, std::shared_ptr<Responder> responder,
                     ApiFlavor flavor, httplib::Response& response);
  bool authorized(const httplib::Request& request) const;
  Json model_object(const std::string& id) const;

  HttpOptions options_;
  ApiContext api_;
  Scheduler& scheduler_;
  Metrics& metrics_;
  std::unique_ptr<httplib::Server> server_;
};

}  // namespace magnetar::server
