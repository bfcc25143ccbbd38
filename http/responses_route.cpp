// Routes::responses, `POST /v1/responses`: the Responses API over the chat path. The body parses
// into the chat route's OpenAIRequest (responses_request), runs as one GenerationJob with the
// same checks, admission gate, timeout, hang-up handling, metrics and request log, and comes back
// as a response object or its stream of events (responses_response).
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <optional>

#include <nlohmann/json.hpp>

#include "http/generation_job.hpp"
#include "http/openai_response.hpp"
#include "http/peer_socket.hpp"
#include "http/responses_request.hpp"
#include "http/responses_response.hpp"
#include "http/routes.hpp"
#include "http/tool_request.hpp"
#include "runtime/logging.hpp"

namespace troupe::http {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

json usage_of(const GenerationJob& job, const TextCodec& codec) {
  int64_t num_reasoning = 0;
  for (const ChoiceStream* c : job.choices())
    if (!c->reasoning().empty()) num_reasoning += int64_t(codec.encode(c->reasoning(), false).size());
  const int64_t num_output = job.num_completion_tokens();
  // NOTE: the reasoning text re-encoded; its tags are not counted, so it stays below the output.
  return responses_usage_json(job.num_prompt_tokens(), num_output, std::min(num_reasoning, num_output),
                              job.num_cached_tokens());
}

// Keeps the conversation and its answer (text, and the calls it made) for a later
// previous_response_id.
void remember(ResponseStore& store, const std::string& id, json conversation, const std::string& answer,
              const std::vector<ToolCall>& calls) {
  json message{{"role", "assistant"}, {"content", answer}};
  if (!calls.empty()) {
    if (answer.empty()) message["content"] = nullptr;
    message["tool_calls"] = tool_calls_json(calls);
  }
  conversation.push_back(std::move(message));
  store.put(id, std::move(conversation));
}

}  // namespace

void Routes::responses(const httplib::Request& req, httplib::Response& res) {
  const auto started = Clock::now();
  std::string id = next_id("resp");
  id[4] = '_';  // OpenAI spells it resp_<hex>
  auto record = std::make_shared<RequestRecord>(start_record(req, res, id));
  std::shared_ptr<GenerationJob> job;
  struct LogAtExit {
    std::function<void()> log;
    ~LogAtExit() {
      if (log) log();
    }
  } log_at_exit{[&] { log_request(*record, res.status, job.get(), started); }};

  Result<json> body = parse_json_body(req.body);
  if (!body.ok()) return send_error(res, api_error_of(body.error()));
  std::string param;
  Result<ResponsesRequest> parsed = parse_responses_request(body.value(), param, generation_defaults_);
  if (!parsed.ok()) return send_error(res, api_error_of(parsed.error(), param));
  ResponsesRequest& request = parsed.value();
  if (!request.ignored_fields.empty())
    log::get("http")->info("{}: /v1/responses ignores the fields {}", record->request_id, joined(request.ignored_fields));
  record->model = request.chat.model;
  if (request.chat.model != config_.served_model_name)
    return send_error(res, ApiError{404, "the model '" + request.chat.model + "' does not exist", "model"});
  // The conversation this response continues and, once answered, stores (store: true).
  json conversation = json::array();
  if (!request.previous_response_id.empty()) {
    std::optional<json> previous = response_store_.get(request.previous_response_id);
    if (!previous)
      return send_error(res, ApiError{404,
                                      "no response '" + request.previous_response_id +
                                          "' is stored (troupe keeps the most recent ones in memory, none "
                                          "across restarts, and none sent with store: false)",
                                      "previous_response_id"});
    conversation = std::move(*previous);
    json messages = json::array();
    if (request.instructions.is_string())
      messages.push_back(json{{"role", "system"}, {"content", request.instructions}});
    for (const json& m : conversation) messages.push_back(m);
    for (const json& m : request.input_messages) messages.push_back(m);
    request.chat.messages = std::move(messages);
  }
  for (const json& m : request.input_messages) conversation.push_back(m);
  Status tools = apply_tool_choice(request.chat.tool_choice, request.chat.tools, config_.enable_auto_tool_choice,
                                   config_.tool_call_parser, request.chat.params, param);
  if (!tools.ok()) {
    if (param == "tool_choice.function.name") param = "tool_choice.name";
    return send_error(res, api_error_of(tools.error(), param));
  }
  std::shared_ptr<AdmissionGate::Ticket> ticket;
  if (auto refused = admit(ticket)) return send_error(res, *refused);

  JobSpec spec;
  ChatRenderOptions render;
  render.add_generation_prompt = true;
  Result<std::string> rendered = render_chat_with_tools(*codec_, request.chat.messages, request.chat.tools, render);
  if (!rendered.ok()) return send_error(res, api_error_of(rendered.error(), "input"));
  spec.prompt_text = std::move(rendered).value();
  spec.prompt_ids = codec_->encode(spec.prompt_text, /*add_special_tokens=*/false);
  if (!request.chat.max_tokens_given) {
    const int64_t limit = max_model_len(), num_prompt = int64_t(spec.prompt_ids.size());
    request.chat.params.max_tokens = std::max<int64_t>(1, limit > 0 ? limit - num_prompt : int64_t(1) << 30);
  }
  spec.id = id;
  spec.request = request.chat;
  spec.reasoning_parser = is_forced(request.chat.tool_choice) ? "" : config_.reasoning_parser;
  spec.tool_call_parser = config_.tool_call_parser;
  job = std::make_shared<GenerationJob>(*engine_, metrics_, *codec_, std::move(spec));
  if (Status status = job->submit(); !status.ok()) {
    job.reset();
    ApiError error = api_error_of(status.error());
    if (error.param == "prompt" || error.param == "messages") error.param = "input";
    if (error.param == "max_tokens") error.param = "max_output_tokens";
    return send_error(res, error);
  }
  ticket->submitted();
  const ResponseSkeleton skeleton = ResponseSkeleton::of(request, id, unix_now(), config_.served_model_name);

  if (!request.chat.stream) {
    switch (wait_whole(*job, req, started)) {
      case WaitEnd::hung_up: return;
      case WaitEnd::shutting_down: return send_error(res, shutting_down());
      case WaitEnd::timed_out: return send_error(res, timeout_error());
      case WaitEnd::finished: break;
    }
    const ChoiceStream& choice = *job->choices().front();
    if (choice.finish_reason() == FinishReason::error) return send_error(res, ApiError{500, "generation failed", ""});
    if (request.store) remember(response_store_, id, conversation, choice.content(), choice.tool_calls());
    res.status = 200;
    res.set_content(dump_json(response_of(skeleton, choice, usage_of(*job, *codec_))), "application/json");
    return;
  }

  struct StreamState {
    explicit StreamState(ResponseSkeleton s) : events(std::move(s)) {}
    ResponseEventStream events;
    bool started = false;
    bool cancelled = false;
    Clock::time_point last_write = Clock::now();
  };
  auto state = std::make_shared<StreamState>(skeleton);
  log_at_exit.log = nullptr;
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, job, ticket, state, started, id, conversation, store = request.store](size_t,
                                                                                   httplib::DataSink& sink) {
        auto write = [&](const std::string& s) {
          if (s.empty()) return true;
          state->last_write = Clock::now();
          return sink.write(s.data(), s.size());
        };
        auto end_with = [&](const std::string& s) {
          if (!write(s)) return false;
          sink.done();
          return true;
        };
        if (stopping_) return false;
        if (!state->started) {
          state->started = true;
          if (!write(state->events.start())) return false;
        }
        if (!state->cancelled && !job->is_finished()) {
          if (is_past_timeout(started)) {
            job->cancel();
            state->cancelled = true;
            return end_with(state->events.fail("timeout", timeout_error().message, usage_of(*job, *codec_)));
          }
          if (gate_.is_aborting()) {
            job->cancel();  // the engine ends it with abort: the response ends "cancelled"
            state->cancelled = true;
          }
        }
        for (const auto& item : job->poll(50ms)) {
          const ChoiceDelta& d = item.second;
          if (d.finish_reason == FinishReason::error)
            return end_with(state->events.fail(
                "server_error", d.error_message.empty() ? "generation failed" : d.error_message, usage_of(*job, *codec_)));
          if (!write(state->events.push(d))) return false;
        }
        if (job->is_finished()) {
          if (store) remember(response_store_, id, conversation, state->events.content(), state->events.tool_calls());
          return end_with(state->events.finish(job->finish_reason(), usage_of(*job, *codec_)));
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

}  // namespace troupe::http
