#include "http/routes.hpp"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>

#include <nlohmann/json.hpp>

#include "http/auth.hpp"
#include "http/generation_config.hpp"
#include "http/generation_job.hpp"
#include "http/openai_request.hpp"
#include "http/openai_response.hpp"
#include "http/peer_socket.hpp"
#include "runtime/logging.hpp"
#include "runtime/version.hpp"

namespace troupe::http {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump_json(body), "application/json");
}

ApiError bad_request(const Error& error, const std::string& param) { return api_error_of(error, param); }

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Chat deltas for one choice: reasoning and content in one delta when both are there.
json chat_delta(const ChoiceDelta& d) {
  json delta = json::object();
  if (!d.reasoning.empty()) delta["reasoning_content"] = d.reasoning;
  if (!d.content.empty()) delta["content"] = d.content;
  if (!d.tool_calls.empty()) delta["tool_calls"] = tool_call_deltas_json(d.tool_calls);
  return delta;
}

}  // namespace

void send_error(httplib::Response& res, const ApiError& error) {
  res.status = error.status;
  if (error.status == 503 || error.status == 429) res.set_header("Retry-After", "1");
  res.set_content(error_body(error), "application/json");
}

Routes::Routes(const Config& config, ServingEngine* engine, std::shared_ptr<const TextCodec> codec)
    : config_(config),
      engine_(engine),
      codec_(std::move(codec)),
      metrics_(config.metrics_prefix, CacheConfigLabels{config.block_size, config.gpu_memory_utilization, config.device}),
      gate_(config.max_waiting_requests),
      request_log_(RequestLog::parse_format(config.log_format), config.log_requests_content),
      id_salt_(std::random_device{}()) {
  // A folder the engine loaded parses; a server without one (tests, a head before its model is
  // known) keeps OpenAI's defaults.
  if (!config_.model.empty()) {
    if (auto defaults = load_generation_defaults(config_); defaults.ok()) generation_defaults_ = defaults.value();
    if (auto model = ModelConfig::load(config_.model); model.ok()) eos_token_ids_ = model->eos_token_ids;
  }
}

bool Routes::is_past_timeout(std::chrono::steady_clock::time_point started) const {
  return config_.request_timeout_s > 0 &&
         std::chrono::steady_clock::now() - started > std::chrono::duration<double>(config_.request_timeout_s);
}

std::optional<ApiError> Routes::admit(std::shared_ptr<AdmissionGate::Ticket>& ticket) {
  if (engine_ && !engine_->failure().empty()) return ApiError{503, "the engine failed: " + engine_->failure(), ""};
  if (!engine_ || !codec_ || !engine_->is_ready()) return not_ready();
  switch (gate_.admit(gate_.is_draining() ? 0 : engine_->stats().num_waiting, ticket)) {
    case Admission::admitted: return std::nullopt;
    case Admission::draining: return shutting_down();
    case Admission::overloaded: break;
  }
  return ApiError{429,
                  "too many requests are waiting (--max-waiting-requests " +
                      std::to_string(config_.max_waiting_requests) + "); retry shortly",
                  ""};
}

Routes::WaitEnd Routes::wait_whole(GenerationJob& job, const httplib::Request& req,
                                   std::chrono::steady_clock::time_point started) {
  bool cancelled = false, timed_out = false, looked_for_socket = false;
  int socket = -1;
  while (!job.is_finished() && !stopping_) {
    job.poll(100ms);
    if (job.is_finished() || cancelled) continue;
    timed_out = is_past_timeout(started);
    if (timed_out || gate_.is_aborting()) {
      job.cancel();
      cancelled = true;
      continue;
    }
    if (!looked_for_socket) {
      socket = find_connection_socket(req.remote_addr, req.remote_port, req.local_port);
      looked_for_socket = true;
    }
    if (is_peer_closed(socket)) {
      job.cancel();
      return WaitEnd::hung_up;
    }
  }
  if (!job.is_finished()) return WaitEnd::shutting_down;
  return timed_out ? WaitEnd::timed_out : WaitEnd::finished;
}

ApiError Routes::timeout_error() const {
  return ApiError{504, "the request ran past --request-timeout (" + std::to_string(config_.request_timeout_s) + " s)",
                  ""};
}

int64_t Routes::max_model_len() const { return engine_ ? engine_->max_model_len() : config_.max_model_len; }

std::string Routes::next_id(const char* prefix) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%s-%08llx%08llx", prefix, static_cast<unsigned long long>(id_salt_ & 0xffffffffu),
                static_cast<unsigned long long>(next_id_.fetch_add(1)));
  return buf;
}

RequestRecord Routes::start_record(const httplib::Request& req, httplib::Response& res,
                                   const std::string& generated_id) const {
  RequestRecord record;
  record.started_at = std::chrono::system_clock::now();
  std::string client_id = req.get_header_value("X-Request-Id");
  record.request_id = is_acceptable_request_id(client_id) ? client_id : generated_id;
  res.set_header("X-Request-Id", record.request_id);
  record.client = req.remote_addr + ":" + std::to_string(req.remote_port);
  // NOTE: the handler runs only after auth passed, so the token is one of the keys.
  if (!config_.api_key.empty()) record.key_id = api_key_id(bearer_token(req.get_header_value("Authorization")));
  record.method = req.method;
  record.path = req.path;
  return record;
}

void Routes::log_request(RequestRecord& record, int status, const GenerationJob* job,
                         std::chrono::steady_clock::time_point started) const {
  record.status = status;
  record.duration_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  if (job) {
    record.num_prompt_tokens = job->num_prompt_tokens();
    record.num_completion_tokens = job->num_completion_tokens();
    record.ttft_ms = job->time_to_first_token_ms();
    FinishReason reason = job->finish_reason();
    // A job that never finished was cut short: the client left or the server stopped.
    record.finish_reason = to_string(job->is_finished() ? reason : FinishReason::abort);
    if (config_.log_requests_content) {
      record.prompt = job->spec().prompt_text;
      for (const ChoiceStream* c : job->choices()) {
        if (!record.output.empty()) record.output += "\n";
        record.output += c->reasoning() + c->content();
      }
    }
  }
  if (!config_.disable_log_requests) request_log_.write(record);
}

void Routes::health(const httplib::Request&, httplib::Response& res) {
  // Readiness: a draining server takes no new work, so a load balancer sends it none.
  if (gate_.is_draining()) return send_error(res, shutting_down());
  if (engine_) {
    // A failed engine stays failed: 503 with why, so an orchestrator restarts this process.
    if (std::string failure = engine_->failure(); !failure.empty())
      return send_error(res, ApiError{503, "the engine failed: " + failure, ""});
  }
  if (!engine_) return send_error(res, not_ready());
  const EngineStats stats = engine_->stats();
  if (!engine_->is_ready()) {
    if (!stats.cluster.enabled) return send_error(res, not_ready());
    // Cluster mode with no group ready: 503 that says why each group does not serve.
    std::string why;
    for (const auto& g : stats.cluster.groups)
      why += (why.empty() ? "" : "; ") + ("group " + std::to_string(g.group_id) + " " + g.state) +
             (g.last_error.empty() ? "" : ": " + g.last_error);
    return send_error(res, ApiError{503, "no group is ready" + (why.empty() ? "" : " (" + why + ")"), ""});
  }
  if (!stats.cluster.enabled) return send_json(res, 200, json::object());
  // Cluster mode: who serves. 200 while at least one group is ready.
  json groups = json::array();
  for (const auto& g : stats.cluster.groups)
    groups.push_back(json{{"group_id", g.group_id},
                          {"state", g.state},
                          {"epoch", g.epoch},
                          {"restarts", g.num_restarts},
                          {"last_error", g.last_error},
                          {"members", g.num_members},
                          {"running", g.num_running}});
  send_json(res, 200,
            json{{"cluster", json{{"num_nodes", stats.cluster.num_nodes},
                                  {"num_groups_ready", stats.cluster.num_groups_ready},
                                  {"requests_resumed", stats.cluster.num_requests_resumed_total},
                                  {"groups", groups}}}});
}

void Routes::live(const httplib::Request&, httplib::Response& res) {
  if (engine_) {
    if (std::string failure = engine_->failure(); !failure.empty())
      return send_error(res, ApiError{503, "the engine failed: " + failure, ""});
  }
  send_json(res, 200, json{{"status", gate_.is_draining() ? "draining" : "alive"}});
}

void Routes::version(const httplib::Request&, httplib::Response& res) {
  send_json(res, 200, json{{"version", kVersion}});
}

void Routes::models(const httplib::Request&, httplib::Response& res) {
  // Every --served-model-name alias, as vLLM lists them.
  json data = json::array();
  for (const std::string& name : served_names())
    data.push_back(json{{"id", name},
                        {"object", "model"},
                        {"created", unix_now()},
                        {"owned_by", "troupe"},
                        {"root", config_.model},
                        {"max_model_len", max_model_len()}});
  send_json(res, 200, json{{"object", "list"}, {"data", data}});
}

void Routes::ping(const httplib::Request&, httplib::Response& res) {
  // SageMaker's (and vLLM's) liveness check: as /health, with an empty 200.
  if (engine_ && engine_->is_ready() && engine_->failure().empty() && !gate_.is_draining()) {
    res.status = 200;
    return;
  }
  health(httplib::Request{}, res);
}

std::vector<std::string> Routes::served_names() const {
  std::vector<std::string> names{config_.served_model_name};
  for (const std::string& name : config_.served_model_names)
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  return names;
}

bool Routes::is_served_name(const std::string& name) const {
  const std::vector<std::string> names = served_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

void Routes::log_ignored_fields(const std::vector<std::string>& fields, const std::string& request_id) const {
  if (fields.empty()) return;
  std::string list;
  for (const std::string& f : fields) list += (list.empty() ? "" : ", ") + f.substr(0, 64);
  log::get("http")->warn("request {}: the following fields were present in the request but ignored: {}", request_id,
                         list);
}

// echo: completions give the prompt's text before the output; chat gives the final message when
// it is the assistant's (what continue_final_message continues), as vLLM does.
void Routes::apply_default_seed(SamplingParams& params) {
  if (config_.default_request_seed < 0 || params.seed >= 0) return;
  // splitmix64 of (seed, arrival): different requests differ, and a run repeats.
  uint64_t z = uint64_t(config_.default_request_seed) + 0x9e3779b97f4a7c15ull * (num_unseeded_.fetch_add(1) + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  params.seed = int64_t((z ^ (z >> 31)) >> 1);
}

std::string Routes::echo_text(const OpenAIRequest& request, const JobSpec& spec) const {
  if (!request.echo) return "";
  if (request.endpoint == Endpoint::completion)
    return request.prompt_is_ids ? codec_->decode_with(spec.prompt_ids, request.decode) : request.prompt_text;
  const json& last = request.messages.back();
  if (last.value("role", "") != "assistant") return "";
  return last.value("content", "");
}

void Routes::metrics(const httplib::Request&, httplib::Response& res) {
  EngineStats stats = engine_ ? engine_->stats() : EngineStats{};
  res.status = 200;
  res.set_content(metrics_.render(stats, config_.served_model_name), "text/plain; version=0.0.4");
}

void Routes::chat_completions(const httplib::Request& req, httplib::Response& res) { generate(req, res, true); }

void Routes::completions(const httplib::Request& req, httplib::Response& res) { generate(req, res, false); }

void Routes::generate(const httplib::Request& req, httplib::Response& res, bool is_chat) {
  const auto started = std::chrono::steady_clock::now();
  const std::string id = next_id(is_chat ? "chatcmpl" : "cmpl");
  auto record = std::make_shared<RequestRecord>(start_record(req, res, id));
  std::shared_ptr<GenerationJob> job;
  // Logs the request when this returns, unless a stream took the record (it logs at its end).
  struct LogAtExit {
    std::function<void()> log;
    ~LogAtExit() {
      if (log) log();
    }
  } log_at_exit{[&] { log_request(*record, res.status, job.get(), started); }};

  Result<json> body = parse_json_body(req.body);
  if (!body.ok()) return send_error(res, bad_request(body.error(), ""));
  std::string param;
  Result<OpenAIRequest> parsed =
      is_chat ? parse_chat_request(body.value(), param, generation_defaults_)
              : parse_completion_request(body.value(), param, generation_defaults_);
  if (!parsed.ok()) return send_error(res, bad_request(parsed.error(), param));
  OpenAIRequest& request = parsed.value();
  record->model = request.model;
  record->user = request.user.substr(0, 128);
  log_ignored_fields(request.ignored_fields, record->request_id);
  if (!is_served_name(request.model))
    return send_error(res, ApiError{404, "the model '" + request.model + "' does not exist", "model"});
  if (request.prompt_logprobs >= 0 && request.stream)  // as vLLM
    return send_error(res, ApiError{400, "prompt_logprobs are not available when stream is true", "prompt_logprobs"});
  if (request.echo && !is_chat && request.logprobs)
    return send_error(res, ApiError{400,
                                    "echo with logprobs is not supported by this server yet (prompt_logprobs gives "
                                    "the prompt's logprobs)",
                                    "echo"});
  if (is_chat) {
    Status tools = apply_tool_choice(request.tool_choice, request.tools, config_.enable_auto_tool_choice,
                                     config_.tool_call_parser, request.params, param);
    if (!tools.ok()) return send_error(res, bad_request(tools.error(), param));
  }
  std::shared_ptr<AdmissionGate::Ticket> ticket;
  if (auto refused = admit(ticket)) return send_error(res, *refused);
  using Clock = std::chrono::steady_clock;

  // Prompt -> ids.
  JobSpec spec;
  if (is_chat) {
    ChatRenderOptions render;
    render.add_generation_prompt = request.add_generation_prompt;
    render.continue_final_message = request.continue_final_message;
    render.template_kwargs = &request.chat_template_kwargs;
    // Assistant tool-call turns keep content null; templates that refuse null get "" (vLLM's).
    Result<std::string> rendered = render_chat_with_tools(*codec_, request.messages, request.tools, render);
    if (!rendered.ok()) return send_error(res, bad_request(rendered.error(), "messages"));
    spec.prompt_text = std::move(rendered).value();
    spec.prompt_ids = codec_->encode(spec.prompt_text, request.add_special_tokens);
  } else if (request.prompt_is_ids) {
    spec.prompt_ids = request.prompt_ids;
  } else {
    spec.prompt_text = request.prompt_text;
    spec.prompt_ids = codec_->encode(spec.prompt_text, request.add_special_tokens);
  }
  spec.echo_text = echo_text(request, spec);
  apply_default_seed(request.params);
  // The prompt, max_tokens and sampling parameters are checked once, by the engine's submit
  // (validate_generation_request); here only the OpenAI defaults are filled in.
  if (!request.max_tokens_given) {
    const int64_t limit = max_model_len(), num_prompt = int64_t(spec.prompt_ids.size());
    int64_t room = limit > 0 ? limit - num_prompt : int64_t(1) << 30;
    request.params.max_tokens = std::max<int64_t>(1, is_chat ? room : std::min<int64_t>(16, room));
  }

  spec.id = id;
  spec.request = request;
  // A call forced by constrained decoding is JSON from the first token: no <think> to split.
  spec.reasoning_parser = is_chat && !is_forced(request.tool_choice) ? config_.reasoning_parser : "";
  spec.tool_call_parser = config_.tool_call_parser;
  spec.eos_token_ids = eos_token_ids_;
  job = std::make_shared<GenerationJob>(*engine_, metrics_, *codec_, std::move(spec));
  if (Status status = job->submit(); !status.ok()) {
    job.reset();  // never ran: logged without tokens or a finish reason
    ApiError error = api_error_of(status.error());
    if (is_chat && error.param == "prompt") error.param = "messages";
    return send_error(res, error);
  }
  ticket->submitted();
  ResponseHeader header{job->spec().id, unix_now(), config_.served_model_name};  // the first name, as vLLM

  if (!request.stream) {
    switch (wait_whole(*job, req, started)) {
      case WaitEnd::hung_up: return;  // nobody is left to answer
      case WaitEnd::shutting_down: return send_error(res, shutting_down());
      case WaitEnd::timed_out: return send_error(res, timeout_error());
      case WaitEnd::finished: break;
    }
    for (const ChoiceStream* c : job->choices())
      if (c->finish_reason() == FinishReason::error) return send_error(res, ApiError{500, "generation failed", ""});
    json usage = usage_json(job->num_prompt_tokens(), job->num_completion_tokens());
    json out = is_chat ? chat_completion_json(header, job->choices(), request.logprobs, usage)
                       : completion_json(header, job->choices(), request.logprobs, usage);
    if (request.prompt_logprobs >= 0) {  // vLLM: the response's for chat, each choice's for completions
      const std::vector<const ChoiceStream*> choices = job->choices();
      if (is_chat) out["prompt_logprobs"] = prompt_logprobs_json(job->spec().prompt_ids, choices[0]->prompt_logprobs(), *codec_);
      for (size_t i = 0; !is_chat && i < choices.size(); ++i)
        out["choices"][i]["prompt_logprobs"] = prompt_logprobs_json(job->spec().prompt_ids, choices[i]->prompt_logprobs(), *codec_);
    }
    return send_json(res, 200, out);
  }

  // Streaming: the provider runs on this HTTP thread until every choice ended or the client left.
  // A drain's abort or --request-timeout cancels the job; its last chunk then carries "abort"
  // (after an error event for a timeout) and [DONE] follows as always.
  struct StreamState {
    bool sent_roles = false;
    bool cancelled = false;
    int64_t text_offset = 0;
    Clock::time_point last_write = Clock::now();
  };
  auto state = std::make_shared<StreamState>();
  log_at_exit.log = nullptr;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, job, ticket, state, header, is_chat, request, started](size_t, httplib::DataSink& sink) {
        auto write = [&](const std::string& s) {
          state->last_write = Clock::now();
          return sink.write(s.data(), s.size());
        };
        if (stopping_) return false;
        if (is_chat && !state->sent_roles) {
          state->sent_roles = true;
          for (int i = 0; i < int(request.n); ++i)
            if (!write(sse_event(chat_chunk_json(header, i, json{{"role", "assistant"}, {"content", ""}}, nullptr,
                                                 FinishReason::none, request.include_usage))))
              return false;
        }
        if (!state->cancelled && !job->is_finished()) {
          const bool timed_out = is_past_timeout(started);
          if (timed_out || gate_.is_aborting()) {
            job->cancel();
            state->cancelled = true;
            if (timed_out && !write("data: " + error_body(timeout_error()) + "\n\n")) return false;
          }
        }
        auto deltas = job->poll(50ms);
        for (const auto& [index, d] : deltas) {
          if (d.finish_reason == FinishReason::error) {
            ApiError error{500, d.error_message.empty() ? "generation failed" : d.error_message, ""};
            if (!write("data: " + error_body(error) + "\n\n")) return false;
            continue;
          }
          bool has_text = !d.content.empty() || !d.reasoning.empty() || !d.tool_calls.empty();
          if (!has_text && d.finish_reason == FinishReason::none && d.logprobs.empty()) continue;
          json lp = nullptr;
          if (request.logprobs && !d.logprobs.empty())
            lp = is_chat ? chat_logprobs_json(d.logprobs) : completion_logprobs_json(d.logprobs, state->text_offset);
          const bool called_tools = is_chat && job->choices()[size_t(index)]->num_tool_calls_streamed() > 0;
          json chunk = is_chat ? chat_chunk_json(header, index, chat_delta(d), lp, d.finish_reason, request.include_usage,
                                                 called_tools)
                               : completion_chunk_json(header, index, d.content, lp, d.finish_reason,
                                                       request.include_usage);
          state->text_offset += int64_t(d.content.size());
          if (!write(sse_event(chunk))) return false;
        }
        if (job->is_finished()) {
          if (request.include_usage &&
              !write(sse_event(usage_chunk_json(header, is_chat,
                                                usage_json(job->num_prompt_tokens(), job->num_completion_tokens())))))
            return false;
          if (!write(sse_done())) return false;
          sink.done();
          return true;
        }
        // NOTE: an SSE comment now and then finds a client that left while nothing was generated.
        if (Clock::now() - state->last_write > 2s && !write(": keep-alive\n\n")) return false;
        return sink.is_writable ? sink.is_writable() : true;
      },
      [this, job, record, started](bool) {
        job->cancel();
        log_request(*record, 200, job.get(), started);
      });
}

void Routes::tokenize(const httplib::Request& req, httplib::Response& res) {
  Result<json> body = parse_json_body(req.body);
  if (!body.ok()) return send_error(res, bad_request(body.error(), ""));
  if (body->contains("model") && (!(*body)["model"].is_string() || !is_served_name((*body)["model"].get<std::string>())))
    return send_error(res, ApiError{404, "the model does not exist", "model"});
  std::string param;
  Result<TokenizeRequest> parsed = parse_tokenize_request(body.value(), param);
  if (!parsed.ok()) return send_error(res, bad_request(parsed.error(), param));
  if (!codec_) return send_error(res, not_ready());
  std::string text = parsed->prompt;
  if (parsed->is_chat) {
    ChatRenderOptions render;
    render.add_generation_prompt = parsed->add_generation_prompt;
    Result<std::string> rendered = render_chat_with_tools(*codec_, parsed->messages, nullptr, render);
    if (!rendered.ok()) return send_error(res, bad_request(rendered.error(), "messages"));
    text = std::move(rendered).value();
  }
  std::vector<int32_t> ids = codec_->encode(text, parsed->add_special_tokens);
  send_json(res, 200, json{{"count", ids.size()}, {"max_model_len", max_model_len()}, {"tokens", ids}});
}

void Routes::detokenize(const httplib::Request& req, httplib::Response& res) {
  Result<json> body = parse_json_body(req.body);
  if (!body.ok()) return send_error(res, bad_request(body.error(), ""));
  if (body->contains("model") && (!(*body)["model"].is_string() || !is_served_name((*body)["model"].get<std::string>())))
    return send_error(res, ApiError{404, "the model does not exist", "model"});
  std::string param;
  Result<std::vector<int32_t>> ids = parse_detokenize_request(body.value(), param);
  if (!ids.ok()) return send_error(res, bad_request(ids.error(), param));
  if (!codec_) return send_error(res, not_ready());
  for (int32_t id : ids.value())
    if (id >= codec_->vocab_size())
      return send_error(res, ApiError{400, "token id " + std::to_string(id) + " is out of the vocabulary", "tokens"});
  send_json(res, 200, json{{"prompt", codec_->decode(ids.value())}});
}

}  // namespace troupe::http
