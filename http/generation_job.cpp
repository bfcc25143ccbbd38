#include "http/generation_job.hpp"

#include <algorithm>

namespace troupe::http {

using Clock = std::chrono::steady_clock;

namespace {
double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}
}  // namespace

GenerationJob::GenerationJob(ServingEngine& engine, Metrics& metrics, const TextCodec& codec, JobSpec spec)
    : engine_(&engine),
      metrics_(&metrics),
      spec_(std::move(spec)),
      queue_(std::make_shared<OutputQueue>()),
      started_at_(Clock::now()) {
  size_t n = size_t(spec_.request.n);
  for (size_t i = 0; i < n; ++i)
    choices_.push_back(std::make_unique<ChoiceStream>(
        int(i), codec, spec_.request.stop, ReasoningParser::create(spec_.reasoning_parser, spec_.prompt_text),
        spec_.request.logprobs, tool_parser_for(spec_.request.tool_choice, spec_.tool_call_parser)));
  for (auto& choice : choices_) choice->set_text_options(text_options());
  submitted_.assign(n, false);
  last_output_at_.assign(n, started_at_);
  got_first_token_.assign(n, false);
  times_.assign(n, FinishedRequestTimes{});
}

GenerationJob::~GenerationJob() { cancel(); }

ChoiceTextOptions GenerationJob::text_options() const {
  ChoiceTextOptions options;
  options.decode = spec_.request.decode;
  options.include_stop_str_in_output = spec_.request.include_stop_str_in_output;
  options.min_tokens = spec_.request.params.min_tokens;
  // The ids whose final text vLLM leaves out: stop_token_ids, and EOS unless ignore_eos.
  options.stop_token_ids = spec_.request.params.stop_token_ids;
  if (!spec_.request.params.ignore_eos)
    options.stop_token_ids.insert(options.stop_token_ids.end(), spec_.eos_token_ids.begin(), spec_.eos_token_ids.end());
  options.echo = spec_.echo_text;
  if (!spec_.request.tool_choice.parallel) options.max_tool_calls = 1;
  return options;
}

Status GenerationJob::submit() {
  for (size_t i = 0; i < choices_.size(); ++i) {
    GenerationRequest request;
    request.request_id = engine_id(i);
    request.prompt_ids = spec_.prompt_ids;
    request.params = spec_.request.params;
    request.max_tokens_must_fit = spec_.request.max_tokens_given;
    // n > 1: choice i gets seed + i so choices differ yet stay reproducible.
    if (request.params.seed >= 0) request.params.seed += int64_t(i);
    std::shared_ptr<OutputQueue> queue = queue_;
    int choice = int(i);
    Status status = engine_->submit(std::move(request),
                                    [queue, choice](const GenerationOutput& out) { queue->push(choice, out); });
    if (!status.ok()) {
      cancel();
      return status;
    }
    submitted_[i] = true;
  }
  return Status::success();
}

void GenerationJob::observe(size_t choice, const QueuedOutput& item) {
  size_t num_new = item.output.new_token_ids.size();
  FinishedRequestTimes& times = times_[choice];
  if (item.output.queue_time_s >= 0) times.queue_s = item.output.queue_time_s;
  times.num_prompt_tokens = item.output.num_prompt_tokens;
  times.num_generation_tokens = item.output.num_generated_tokens;
  num_cached_tokens_ = std::max(num_cached_tokens_, item.output.num_cached_tokens);
  if (num_new > 0) {
    if (!got_first_token_[choice]) {
      times.first_token_s = seconds_between(started_at_, item.at);
      metrics_->observe_time_to_first_token(times.first_token_s);
      got_first_token_[choice] = true;
      if (first_token_at_ == Clock::time_point{} || item.at < first_token_at_) first_token_at_ = item.at;
      num_new -= 1;  // the first token has no inter-token latency
    }
    double per_token = num_new > 0 ? seconds_between(last_output_at_[choice], item.at) / double(num_new) : 0.0;
    for (size_t t = 0; t < num_new; ++t) metrics_->observe_inter_token_latency(per_token);
    last_output_at_[choice] = item.at;
  }
}

std::vector<std::pair<int, ChoiceDelta>> GenerationJob::poll(std::chrono::milliseconds timeout) {
  std::vector<std::pair<int, ChoiceDelta>> deltas;
  std::deque<QueuedOutput> items;
  if (!queue_->pop_all(items, timeout)) return deltas;
  for (const QueuedOutput& item : items) {
    size_t c = size_t(item.choice);
    if (c >= choices_.size() || choices_[c]->is_finished()) continue;
    observe(c, item);
    ChoiceDelta delta = choices_[c]->push(item.output);
    if (choices_[c]->is_finished()) {
      if (choices_[c]->needs_cancel()) engine_->cancel(engine_id(c));
      metrics_->observe_e2e_latency(seconds_between(started_at_, item.at));
      times_[c].e2e_s = seconds_between(started_at_, item.at);
      metrics_->observe_finished(times_[c]);
      metrics_->count_finished(choices_[c]->finish_reason());
    }
    deltas.emplace_back(int(c), std::move(delta));
  }
  return deltas;
}

bool GenerationJob::is_finished() const {
  for (const auto& c : choices_)
    if (!c->is_finished()) return false;
  return true;
}

void GenerationJob::cancel() {
  for (size_t i = 0; i < choices_.size(); ++i)
    if (submitted_[i] && !choices_[i]->is_finished()) {
      engine_->cancel(engine_id(i));
      metrics_->count_finished(FinishReason::abort);
      submitted_[i] = false;
    }
}

std::vector<const ChoiceStream*> GenerationJob::choices() const {
  std::vector<const ChoiceStream*> out;
  for (const auto& c : choices_) out.push_back(c.get());
  return out;
}

double GenerationJob::time_to_first_token_ms() const {
  if (first_token_at_ == Clock::time_point{}) return -1.0;
  return seconds_between(started_at_, first_token_at_) * 1e3;
}

FinishReason GenerationJob::finish_reason() const {
  FinishReason reason = FinishReason::none;
  for (const auto& c : choices_) {
    if (c->finish_reason() == FinishReason::error) return FinishReason::error;
    if (reason == FinishReason::none) reason = c->finish_reason();
  }
  return reason;
}

int64_t GenerationJob::num_completion_tokens() const {
  int64_t total = 0;
  for (const auto& c : choices_) total += c->num_completion_tokens();
  return total;
}

}  // namespace troupe::http
