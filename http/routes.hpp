#pragma once
// The handlers behind each route. server.cpp registers them one per line; errors leave here as
// ApiError and are written in the OpenAI error shape by one function.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "http/admission_gate.hpp"
#include "http/error.hpp"
#include "http/metrics.hpp"
#include "http/request_log.hpp"
#include "http/response_store.hpp"
#include "http/text_codec.hpp"
#include "runtime/config.hpp"
#include "runtime/model_config.hpp"
#include "engine/serving_engine.hpp"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace troupe::http {

void send_error(httplib::Response& res, const ApiError& error);

class GenerationJob;
struct JobSpec;
struct OpenAIRequest;

class Routes {
 public:
  // engine and codec may be null: generation and tokenizer routes then answer 503.
  Routes(const Config& config, ServingEngine* engine, std::shared_ptr<const TextCodec> codec);

  // Readiness: 200 while a model can answer now; 503 while loading, while no group is ready and
  // while draining.
  void health(const httplib::Request& req, httplib::Response& res);
  // Liveness: 200 while this process can serve at all, loading, draining and group restarts
  // included; 503 only when its engine failed for good (restarting the process is the cure).
  void live(const httplib::Request& req, httplib::Response& res);
  void version(const httplib::Request& req, httplib::Response& res);
  void models(const httplib::Request& req, httplib::Response& res);
  void ping(const httplib::Request& req, httplib::Response& res);
  void metrics(const httplib::Request& req, httplib::Response& res);
  void chat_completions(const httplib::Request& req, httplib::Response& res);
  void completions(const httplib::Request& req, httplib::Response& res);
  void responses(const httplib::Request& req, httplib::Response& res);  // http/responses_route.cpp
  void tokenize(const httplib::Request& req, httplib::Response& res);
  void detokenize(const httplib::Request& req, httplib::Response& res);

  // Makes open streams and waiting requests end (their engine requests are cancelled); called
  // before the HTTP server stops.
  void stop() { stopping_ = true; }
  // Admission (429 past --max-waiting-requests) and the graceful drain (Server::drain).
  AdmissionGate& gate() { return gate_; }

 private:
  void generate(const httplib::Request& req, httplib::Response& res, bool is_chat);
  int64_t max_model_len() const;
  // --served-model-name's names, the first first; a request's `model` may be any of them.
  std::vector<std::string> served_names() const;
  bool is_served_name(const std::string& name) const;
  void log_ignored_fields(const std::vector<std::string>& fields, const std::string& request_id) const;
  std::string echo_text(const OpenAIRequest& request, const JobSpec& spec) const;
  // --seed: a request without a seed gets one derived from it and the request's arrival order.
  void apply_default_seed(SamplingParams& params);
  std::string next_id(const char* prefix);
  // True when the request has run past --request-timeout.
  bool is_past_timeout(std::chrono::steady_clock::time_point started) const;
  // A generation's admission, after its request is valid: the engine's failure (503), still
  // loading (503), draining (503) or --max-waiting-requests reached (429) as an error; else none,
  // with `ticket` holding the request's place until it is released.
  std::optional<ApiError> admit(std::shared_ptr<AdmissionGate::Ticket>& ticket);
  ApiError timeout_error() const;
  // A non-streaming job's wait: cancelled (finish_reason "abort") on a drain's abort or past
  // --request-timeout, dropped when the client hangs up (the socket is looked for only once a
  // request outlives one poll).
  enum class WaitEnd { finished, hung_up, shutting_down, timed_out };
  WaitEnd wait_whole(GenerationJob& job, const httplib::Request& req, std::chrono::steady_clock::time_point started);
  // The request log's fields known on arrival; echoes the request id as X-Request-Id.
  RequestRecord start_record(const httplib::Request& req, httplib::Response& res, const std::string& generated_id) const;
  // Fills the outcome (job may be null: the request ended before one ran) and logs the line.
  void log_request(RequestRecord& record, int status, const GenerationJob* job,
                   std::chrono::steady_clock::time_point started) const;

  const Config& config_;
  ServingEngine* engine_;
  std::shared_ptr<const TextCodec> codec_;
  GenerationDefaults generation_defaults_;  // the model's generation_config.json sampling defaults
  std::vector<int64_t> eos_token_ids_;      // the model's; their text ends no output (as vLLM's)
  Metrics metrics_;
  AdmissionGate gate_;
  RequestLog request_log_;
  ResponseStore response_store_;  // /v1/responses' previous_response_id
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> next_id_{0};
  std::atomic<uint64_t> num_unseeded_{0};
  uint64_t id_salt_;
};

}  // namespace troupe::http
