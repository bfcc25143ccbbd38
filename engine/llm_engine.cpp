#include "engine/llm_engine.hpp"

#include <algorithm>

#include "runtime/logging.hpp"
#include "runtime/model_config.hpp"

namespace troupe {

Result<int64_t> resolve_max_model_len(const Config& config, const ModelConfig& model_config) {
  const int64_t model_len = model_config.max_position_embeddings;
  const int64_t max_model_len = config.max_model_len > 0 ? config.max_model_len : model_len;
  if (model_len > 0 && max_model_len > model_len)
    return make_error(ErrorCode::invalid_argument,
                      "--max-model-len " + std::to_string(config.max_model_len) +
                          " exceeds the model's max_position_embeddings " + std::to_string(model_len));
  return max_model_len;
}

Result<std::unique_ptr<LlmEngine>> LlmEngine::create(const Config& config, std::unique_ptr<Backend> backend,
                                                     std::unique_ptr<Model> model, int64_t num_kv_blocks) {
  if (!backend || !model) return make_error(ErrorCode::invalid_argument, "the engine needs a backend and a model");
  if (num_kv_blocks < 1) return make_error(ErrorCode::out_of_resources, "no memory is left for even one KV-cache block");
  std::unique_ptr<LlmEngine> engine(new LlmEngine());
  engine->backend_ = std::move(backend);
  engine->model_ = std::move(model);
  const ModelConfig& model_config = engine->model_->config();
  engine->vocab_size_ = model_config.vocab_size;
  auto max_model_len = resolve_max_model_len(config, model_config);
  if (!max_model_len.ok()) return max_model_len.error();
  engine->max_model_len_ = max_model_len.value();
  engine->num_kv_blocks_ = num_kv_blocks;
  auto cache = engine->backend_->create_kv_cache(engine->model_->kv_cache_spec(engine->num_kv_blocks_, config.block_size));
  if (!cache.ok()) return cache.error();
  engine->cache_ = std::make_unique<KvCache>(std::move(cache.value()));

  SchedulerConfig sched;
  sched.max_num_seqs = config.max_num_seqs;
  sched.max_num_batched_tokens = config.max_num_batched_tokens;
  sched.num_blocks = engine->num_kv_blocks_;
  sched.block_size = config.block_size;
  sched.max_model_len = engine->max_model_len_;
  sched.enable_prefix_caching = config.enable_prefix_caching;
  // Prompt-logprobs rows of one step at most 512 MiB of fp32 logits (1,038 tokens of DeepSeek-V3's
  // vocabulary); the tiny fixtures are not limited by it.
  sched.max_prompt_logits_tokens = std::max<int64_t>(1, (int64_t(1) << 27) / std::max<int64_t>(1, model_config.vocab_size));
  for (int64_t id : model_config.eos_token_ids) sched.eos_token_ids.push_back(int32_t(id));
  TROUPE_TRY(sched.validate());
  engine->scheduler_ = std::make_unique<Scheduler>(sched);
  engine->runner_ = std::make_unique<ModelRunner>(*engine->model_, *engine->cache_, *engine->backend_);
  engine->max_steps_in_flight_ = std::max<int64_t>(1, engine->runner_->max_steps_in_flight());
  engine->sampling_ = std::make_unique<SamplingStep>(*engine->backend_, engine->vocab_size_, sched.eos_token_ids);
  engine->constrained_ = std::make_unique<ConstrainedDecoding>(config.model + "/tokenizer.json", engine->vocab_size_,
                                                               sched.eos_token_ids);
  // A pipeline keeps its own steps in flight (AsyncSteps); overlap is for a model of one stage.
  if (config.async_scheduling && engine->max_steps_in_flight_ == 1)
    engine->worker_ = std::make_unique<StepWorker>(*engine->backend_);
  log::get("engine")->info(
      "{} on {}: {} layers, {} KV blocks of {} tokens, max_model_len {}, prefix caching {}, {} step(s) in flight, "
      "overlapped scheduling {}",
      model_config.architecture, engine->backend_->name(), model_config.num_hidden_layers, engine->num_kv_blocks_,
      config.block_size, engine->max_model_len_, config.enable_prefix_caching ? "on" : "off",
      engine->max_steps_in_flight_, engine->worker_ ? "on" : "off");
  return engine;
}

LlmEngine::~LlmEngine() { stop(); }

void LlmEngine::start() {
  if (thread_.joinable()) return;
  running_ = true;
  thread_ = std::thread([this] { loop(); });
}

void LlmEngine::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  running_ = false;
}

Status LlmEngine::submit(GenerationRequest request, OutputCallback on_output) {
  if (failed_) return make_error(ErrorCode::unavailable, "the engine failed: " + failure());
  if (!running_) return make_error(ErrorCode::unavailable, "the engine is not running");
  TROUPE_TRY(validate_generation_request(request, RequestLimits{vocab_size_, max_model_len_}));
  if (Status c = validate_output_constraint(request.params.constraint); !c.ok()) {
    Error e = c.error();
    e.param = "response_format";
    return e;
  }
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return make_error(ErrorCode::unavailable, "the engine is stopping");
    if (pending_ids_.count(request.request_id))
      return make_error(ErrorCode::invalid_argument, "request id '" + request.request_id + "' is already live");
    pending_ids_.insert(request.request_id);
    inbox_.added.emplace_back(Sequence(request.request_id, std::move(request.prompt_ids), request.params),
                              std::move(on_output));
  }
  wake_.notify_one();
  return Status::success();
}

void LlmEngine::cancel(const std::string& request_id) {
  {
    std::lock_guard lock(mutex_);
    inbox_.cancelled.push_back(request_id);
  }
  wake_.notify_one();
}

EngineStats LlmEngine::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

std::string LlmEngine::failure() const {
  std::lock_guard lock(mutex_);
  return failure_;
}

void LlmEngine::loop() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] {
        return stopping_ || !inbox_.added.empty() || !inbox_.cancelled.empty() || scheduler_->has_unfinished();
      });
      if (stopping_) break;
    }
    // NOTE: nothing may throw past this thread: an exception (std::bad_alloc from a device
    // allocation) fails the engine like a device fault.
    Status stepped = Status::success();
    try {
      take_inbox();
      if (scheduler_->has_unfinished()) stepped = worker_ ? overlapped_step() : step();
    } catch (const std::exception& e) {
      stepped = check_device("before an exception");
      if (stepped.ok()) stepped = make_error(ErrorCode::internal, std::string("exception on the engine thread: ") + e.what());
    }
    if (!stepped.ok()) {
      fail_engine(stepped.error().message);
      break;
    }
    publish_stats();
  }
  try {
    take_inbox();
  } catch (const std::exception&) {  // a failed engine's inbox; its requests end below
  }
  fail_all(failed_ ? "the engine failed: " + failure() : "the engine stopped");
  publish_stats();
  running_ = false;
  if (failed_ && on_failure_) on_failure_(failure());
}

void LlmEngine::fail_engine(const std::string& why) {
  log::get("engine")->error("the engine failed: {}", why);
  {
    std::lock_guard lock(mutex_);
    failure_ = why;
    stats_.failure = why;  // before any request hears of it: a client that saw an error sees the failure
  }
  failed_ = true;
}

Status LlmEngine::check_device(const char* during) const {
  Status status = backend_->status();
  if (status.ok()) return status;
  return make_error(status.error().code, backend_->name() + " device fault " + during + ": " + status.error().message);
}

void LlmEngine::take_inbox() {
  Inbox inbox;
  {
    std::lock_guard lock(mutex_);
    std::swap(inbox, inbox_);
  }
  for (auto& [seq, callback] : inbox.added) {
    const std::string request_id = seq.request_id;
    const int64_t num_prompt = seq.num_prompt_tokens();
    Result<int64_t> added = make_error(ErrorCode::internal, "");
    if (!seq.params.constraint.is_none()) {
      auto matcher = constrained_->matcher_for(seq.params.constraint);
      if (matcher.ok()) seq.matcher = std::move(matcher.value());
      else added = matcher.error();
    }
    if (seq.params.constraint.is_none() || seq.matcher) added = scheduler_->add(std::move(seq));
    if (!added.ok()) {
      GenerationOutput out;
      out.finish_reason = FinishReason::error;
      out.error_message = added.error().message;
      out.num_prompt_tokens = num_prompt;
      callback(out);
      std::lock_guard lock(mutex_);
      pending_ids_.erase(request_id);
      continue;
    }
    live_[request_id] = Live{std::move(callback)};
    std::lock_guard lock(mutex_);
    num_prompt_tokens_total_ += num_prompt;
  }
  for (const auto& request_id : inbox.cancelled) cancel_now_or_later(request_id);
}

void LlmEngine::cancel_now_or_later(const std::string& request_id) {
  if (scheduler_->is_in_flight(request_id)) {
    scheduler_->find(request_id)->is_cancelled = true;  // not scheduled again
    deferred_cancels_.push_back(request_id);
    return;
  }
  if (auto seq = scheduler_->abort(request_id)) emit(*seq, {}, nullptr);
}

void LlmEngine::drain_in_flight() {
  while (!in_flight_.empty()) {
    InFlight step = std::move(in_flight_.front());
    in_flight_.pop_front();
    if (step.done.valid()) {
      try {
        step.done.get();  // the worker is done with the step (and its sequences)
      } catch (const std::exception&) {  // the engine fails or fails its requests anyway
      }
    } else if (!failed_) {
      // A healthy pipeline still sends these logits: take them, so later steps find theirs.
      (void)runner_->finish(std::move(step.started));
    }
    ModelOutput none;
    if (step.masks_started) constrained_->finish_masks(none);
    scheduler_->forget(step.batch);
  }
}

Status LlmEngine::step() {
  // Fill: up to max_steps_in_flight_ batches of different sequences started.
  while (int64_t(in_flight_.size()) < max_steps_in_flight_) {
    const int64_t k = max_steps_in_flight_;
    const int64_t live = scheduler_->num_running() + scheduler_->num_waiting();
    ScheduledBatch batch = scheduler_->schedule(k > 1 ? std::max<int64_t>(1, (live + k - 1) / k) : 0);
    for (auto& seq : batch.finished) emit(*seq, {}, nullptr);
    if (batch.empty()) break;
    observe_scheduled(batch);
    // Masks on a helper thread while the forward runs; one batch's at a time (the oldest's).
    const bool masks_now = in_flight_.empty();
    if (masks_now) constrained_->start_masks(batch);
    const auto begin = std::chrono::steady_clock::now();
    auto started = runner_->start(batch, scheduler_->block_manager());
    step_busy_ns_.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - begin).count());
    TROUPE_TRY(check_device("in the forward"));
    if (!started.ok()) {
      ModelOutput none;
      if (masks_now) constrained_->finish_masks(none);
      scheduler_->forget(batch);
      fail_all("model forward failed: " + started.error().message);
      return Status::success();
    }
    if (!in_flight_.empty()) num_overlapped_steps_.fetch_add(1);
    in_flight_.push_back(InFlight{std::move(batch), std::move(started.value()), masks_now, {}, {}, {}});
  }
  if (in_flight_.empty()) return Status::success();

  // Finish the oldest: its logits, sampled, postprocessed.
  InFlight step = std::move(in_flight_.front());
  in_flight_.pop_front();
  if (!step.masks_started) constrained_->start_masks(step.batch);
  const auto begin = std::chrono::steady_clock::now();
  auto output = runner_->finish(std::move(step.started));
  if (output.ok()) constrained_->finish_masks(output.value());
  TROUPE_TRY(check_device("in the forward"));
  if (!output.ok()) {
    ModelOutput none;
    constrained_->finish_masks(none);
    scheduler_->forget(step.batch);
    fail_all("model forward failed: " + output.error().message);
    return Status::success();
  }
  auto sampled = sampling_->sample(output->logits, output->rows);
  step_busy_ns_.fetch_add(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - begin).count());
  num_steps_.fetch_add(1);
  TROUPE_TRY(check_device("while sampling"));
  if (!sampled.ok()) {
    scheduler_->forget(step.batch);
    fail_all("sampling failed: " + sampled.error().message);
    return Status::success();
  }
  Status done = postprocess(step.batch, output.value(), sampled.value());
  // Cancels that waited for this batch (those still in flight wait on).
  std::vector<std::string> cancels;
  std::swap(cancels, deferred_cancels_);
  for (const auto& request_id : cancels) cancel_now_or_later(request_id);
  return done;
}

Status LlmEngine::postprocess(const ScheduledBatch& batch, const ModelOutput& output,
                              const std::vector<SampledToken>& sampled,
                              std::vector<std::unique_ptr<Sequence>>* finished_out) {
  std::vector<int32_t> ids;
  for (const auto& s : sampled) ids.push_back(s.token_id);
  // Overlapped scheduling: rows of sequences that ended at the step before are dropped.
  std::vector<bool> dropped(output.sequences.size());
  int64_t num_dropped = 0;
  for (size_t k = 0; k < output.sequences.size(); ++k) {
    dropped[k] = output.sequences[k]->is_finished();
    num_dropped += dropped[k] ? 1 : 0;
  }
  for (size_t k = 0; k < output.sequences.size() && k < ids.size(); ++k) {
    Sequence* seq = output.sequences[k];
    if (!dropped[k] && seq->matcher && !seq->matcher->accept_token(ids[k]))
      log::get("engine")->warn("request {}: sampled token {} is outside its grammar", seq->request_id, ids[k]);
  }
  auto finished = scheduler_->postprocess(batch, ids);
  if (!finished.ok()) {
    fail_all("scheduler failed: " + finished.error().message);
    return Status::success();
  }
  {
    std::lock_guard lock(mutex_);
    num_generation_tokens_total_ += int64_t(ids.size()) - num_dropped;
  }
  // Sequences that finished this step are owned by `finished` now; their pointers stay valid.
  for (size_t k = 0; k < output.sequences.size(); ++k) {
    if (dropped[k]) continue;
    std::vector<SampledToken> one{sampled[k]};
    emit(*output.sequences[k], {ids[k]}, &one);
  }
  if (finished_out)
    for (auto& seq : finished.value()) finished_out->push_back(std::move(seq));
  return Status::success();
}

Status LlmEngine::overlapped_step() {
  // NOTE: in_flight_ holds at most one step between calls: the one the worker runs (or ran).
  const ScheduledBatch* ahead_of = in_flight_.empty() ? nullptr : &in_flight_.front().batch;
  ScheduledBatch batch = scheduler_->schedule(0, ahead_of);
  for (auto& seq : batch.finished) emit(*seq, {}, nullptr);
  const bool started = !batch.empty();
  if (started) {
    observe_scheduled(batch);
    if (!in_flight_.empty()) num_overlapped_steps_.fetch_add(1);
    start_on_worker(std::move(batch));
  }
  // Postprocess the step before this one while this one runs (or the last one, when none started).
  if (in_flight_.size() > 1 || (!started && !in_flight_.empty())) return finish_on_worker();
  return Status::success();
}

void LlmEngine::start_on_worker(ScheduledBatch batch) {
  auto job = std::make_unique<WorkerJob>();
  job->prepared = runner_->prepare(batch, scheduler_->block_manager(), /*own_tables=*/true);
  bool masks = false;
  for (const ScheduledEntry& entry : batch.entries) masks = masks || (entry.produces_token && entry.seq->matcher);
  if (masks) {  // computed here, on the helper thread, while the step before runs; applied on the worker
    constrained_->start_masks(batch);
    constrained_->finish_masks(job->prepared.step.output);
    // The next batch's masks reuse ConstrainedDecoding's buffer: this step keeps a copy of its own.
    for (SamplerRow& row : job->prepared.step.output.rows) {
      if (row.allowed == nullptr) continue;
      job->masks.emplace_back(row.allowed, row.allowed + row.num_allowed_words);
      row.allowed = job->masks.back().data();
    }
  }
  WorkerJob* raw = job.get();
  std::future<void> done =
      worker_->submit([this, raw](const std::vector<int32_t>& previous) { return run_on_worker(*raw, previous); });
  in_flight_.push_back(InFlight{std::move(batch), StartedStep{}, masks, std::move(job), std::move(done), {}});
}

std::vector<int32_t> LlmEngine::run_on_worker(WorkerJob& job, const std::vector<int32_t>& previous_samples) {
  PreparedStep& prepared = job.prepared;
  for (const auto& input : prepared.inputs_from_previous) {
    if (input.previous_row < 0 || size_t(input.previous_row) >= previous_samples.size()) {
      job.output = make_error(ErrorCode::internal, "the step before did not sample this step's input tokens");
      return {};
    }
    prepared.forward.token_ids[size_t(input.index)] = previous_samples[size_t(input.previous_row)];
  }
  auto launched = runner_->launch(prepared);
  job.output = launched.ok() ? runner_->finish(std::move(launched.value())) : Result<ModelOutput>(launched.error());
  job.device = backend_->status();
  num_steps_.fetch_add(1);
  if (!job.output->ok()) return {};
  // NOTE: device memory is freed here, on the worker: the engine thread must not call the backend
  // (its allocator, or a step graph being recorded) while a step runs.
  Tensor logits = std::move(job.output->value().logits);
  if (!job.device.ok()) return {};
  job.sampled = sampling_->sample(logits, job.output->value().rows);
  job.device = backend_->status();
  std::vector<int32_t> ids;
  if (job.sampled->ok())
    for (const SampledToken& token : job.sampled->value()) ids.push_back(token.token_id);
  return ids;
}

Status LlmEngine::finish_on_worker() {
  InFlight step = std::move(in_flight_.front());
  in_flight_.pop_front();
  step.done.get();  // an exception on the worker fails the engine (loop)
  WorkerJob& job = *step.job;
  if (!job.device.ok())
    return make_error(job.device.error().code, backend_->name() + " device fault in the forward: " + job.device.error().message);
  const char* failed = !job.output->ok() ? "model forward failed: " : !job.sampled->ok() ? "sampling failed: " : nullptr;
  if (failed) {
    scheduler_->forget(step.batch);
    fail_all(failed + (!job.output->ok() ? job.output->error().message : job.sampled->error().message));
    return Status::success();
  }
  std::vector<std::unique_ptr<Sequence>> finished;
  Status done = postprocess(step.batch, job.output->value(), job.sampled->value(), &finished);
  // Sequences the step in flight still reads stay alive until it is done.
  if (!in_flight_.empty())
    for (auto& seq : finished) in_flight_.front().keep_alive.push_back(std::move(seq));
  std::vector<std::string> cancels;
  std::swap(cancels, deferred_cancels_);
  for (const auto& request_id : cancels) cancel_now_or_later(request_id);
  return done;
}

void LlmEngine::observe_scheduled(const ScheduledBatch& batch) {
  const auto now = std::chrono::steady_clock::now();
  for (const auto& entry : batch.entries) {
    auto it = live_.find(entry.seq->request_id);
    if (it != live_.end() && it->second.queue_time_s < 0)
      it->second.queue_time_s = std::chrono::duration<double>(now - it->second.added_at).count();
  }
  size_t bucket = 0;
  while (bucket < kIterationTokensBounds.size() && batch.num_batched_tokens > kIterationTokensBounds[bucket]) ++bucket;
  std::lock_guard lock(mutex_);
  ++iteration_tokens_counts_[bucket];
  iteration_tokens_sum_ += batch.num_batched_tokens;
}

void LlmEngine::emit(Sequence& seq, std::vector<int32_t> new_ids, const std::vector<SampledToken>* sampled) {
  auto it = live_.find(seq.request_id);
  if (it == live_.end()) return;
  GenerationOutput out;
  out.new_token_ids = std::move(new_ids);
  if (sampled && seq.params.logprobs >= 0) {
    for (const auto& s : *sampled) {
      out.logprobs.push_back(s.logprob);
      out.top_logprobs.push_back(s.top_logprobs);
    }
  }
  out.finish_reason = seq.is_finished() ? seq.finish_reason : FinishReason::none;
  if (seq.params.prompt_logprobs >= 0 && !seq.prompt_logprobs_sent &&
      (out.finish_reason != FinishReason::none || (!out.new_token_ids.empty() && !seq.needs_prompt_logprobs()))) {
    out.prompt_logprobs = std::move(seq.prompt_logprobs);
    seq.prompt_logprobs.clear();
    seq.prompt_logprobs_sent = true;
  }
  out.num_prompt_tokens = seq.num_prompt_tokens();
  out.num_generated_tokens = seq.num_output_tokens();
  if (!it->second.queue_time_sent && it->second.queue_time_s >= 0) {
    out.queue_time_s = it->second.queue_time_s;
    it->second.queue_time_sent = true;
  }
  out.num_cached_tokens = seq.num_cached_tokens;
  it->second.on_output(out);
  if (out.finish_reason != FinishReason::none) {
    live_.erase(it);
    std::lock_guard lock(mutex_);
    pending_ids_.erase(seq.request_id);
  }
}

void LlmEngine::fail_all(const std::string& message) {
  drain_in_flight();
  deferred_cancels_.clear();
  if (!live_.empty()) log::get("engine")->error("{}; ending {} requests", message, live_.size());
  std::vector<std::string> ids;
  for (const auto& [id, live] : live_) ids.push_back(id);
  for (const auto& id : ids) {
    auto seq = scheduler_->abort(id);
    GenerationOutput out;
    out.finish_reason = FinishReason::error;
    out.error_message = message;
    if (seq) {
      out.num_prompt_tokens = seq->num_prompt_tokens();
      out.num_generated_tokens = seq->num_output_tokens();
    }
    live_[id].on_output(out);
    live_.erase(id);
  }
  std::lock_guard lock(mutex_);
  pending_ids_.clear();
}

void LlmEngine::publish_stats() {
  std::lock_guard lock(mutex_);
  stats_.num_running = scheduler_->num_running();
  stats_.num_waiting = scheduler_->num_waiting() + int64_t(inbox_.added.size());
  stats_.num_kv_blocks_total = scheduler_->block_manager().num_blocks();
  stats_.num_kv_blocks_used = scheduler_->block_manager().num_used_blocks();
  stats_.num_prompt_tokens_total = num_prompt_tokens_total_;
  stats_.num_generation_tokens_total = num_generation_tokens_total_;
  stats_.num_preemptions_total = scheduler_->num_preemptions_total();
  stats_.iteration_tokens_counts = iteration_tokens_counts_;
  stats_.iteration_tokens_sum = iteration_tokens_sum_;
  stats_.num_prefix_cache_queries_total = scheduler_->num_prefix_cache_queries_total();
  stats_.num_prefix_cache_hits_total = scheduler_->num_prefix_cache_hits_total();
  stats_.failure = failure_;
}

}  // namespace troupe
