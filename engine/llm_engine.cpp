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
  for (int64_t id : model_config.eos_token_ids) sched.eos_token_ids.push_back(int32_t(id));
  TROUPE_TRY(sched.validate());
  engine->scheduler_ = std::make_unique<Scheduler>(sched);
  log::get("engine")->info("{} on {}: {} layers, {} KV blocks of {} tokens, max_model_len {}",
                           model_config.architecture, engine->backend_->name(), model_config.num_hidden_layers,
                           engine->num_kv_blocks_, config.block_size, engine->max_model_len_);
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
  if (!running_) return make_error(ErrorCode::unavailable, "the engine is not running");
  TROUPE_TRY(validate_generation_request(request, vocab_size_, max_model_len_));
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

void LlmEngine::loop() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] {
        return stopping_ || !inbox_.added.empty() || !inbox_.cancelled.empty() || scheduler_->has_unfinished();
      });
      if (stopping_) break;
    }
    take_inbox();
    if (scheduler_->has_unfinished()) step();
    publish_stats();
  }
  take_inbox();
  fail_all("the engine stopped");
  publish_stats();
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
    auto added = scheduler_->add(std::move(seq));
    if (!added.ok()) {
      GenerationOutput out;
      out.finish_reason = "error";
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
  for (const auto& request_id : inbox.cancelled) {
    if (auto seq = scheduler_->abort(request_id)) emit(*seq, {}, nullptr);
  }
}

void LlmEngine::step() {
  ScheduledBatch batch = scheduler_->schedule();
  for (auto& seq : batch.finished) emit(*seq, {}, nullptr);
  if (batch.empty()) return;

  ForwardBatch forward;
  forward.token_ids.reserve(size_t(batch.num_batched_tokens));
  forward.positions.reserve(size_t(batch.num_batched_tokens));
  std::vector<SamplerRow> rows;
  std::vector<Sequence*> sampled_seqs;
  for (const ScheduledEntry& entry : batch.entries) {
    for (int64_t i = 0; i < entry.num_new_tokens; ++i) {
      forward.token_ids.push_back(entry.seq->token_at(entry.start_position + i));
      forward.positions.push_back(int32_t(entry.start_position + i));
    }
    SequenceSlice slice;
    slice.num_new_tokens = int32_t(entry.num_new_tokens);
    slice.context_len = int32_t(entry.start_position + entry.num_new_tokens);
    slice.block_table = &scheduler_->block_manager().block_table(entry.seq_id);
    slice.needs_logits = entry.produces_token;
    forward.seqs.push_back(slice);
    if (entry.produces_token) {
      rows.push_back(entry.seq->sampler_row());
      sampled_seqs.push_back(entry.seq);
    }
  }

  auto logits = model_->forward(forward, *cache_, LogitsMode::last_token);
  if (!logits.ok()) return fail_all("model forward failed: " + logits.error().message);
  std::vector<SampledToken> sampled;
  // Rows without penalties and logprobs sample on the device when the backend can, so the logits
  // stay there. Each non-greedy row draws its uniform here as the host Sampler would (once per
  // token); when the device declines, the drawn RNGs are restored and the host samples instead.
  bool device_ok = !rows.empty() && backend_->device() != Device::cpu && logits.value().dim() == 2 &&
                   logits.value().size(1) == vocab_size_;
  for (const SamplerRow& row : rows) {
    const SamplingParams& p = *row.params;
    device_ok = device_ok && !has_penalties(p) && p.logprobs < 0 && (p.is_greedy() || row.rng != nullptr);
  }
  if (device_ok) {
    std::vector<DeviceSampleRow> device_rows;
    std::vector<SequenceRng> saved;  // the drawn rows' RNGs before the draw
    device_rows.reserve(rows.size());
    for (const SamplerRow& row : rows) {
      const SamplingParams& p = *row.params;
      DeviceSampleRow d{p.temperature, p.top_k, p.top_p, p.min_p, 0.0};
      if (!p.is_greedy()) {
        saved.push_back(*row.rng);
        d.uniform = row.rng->next_uniform();
      }
      device_rows.push_back(d);
    }
    std::vector<int32_t> device_ids;
    if (backend_->sample_on_device(logits.value(), device_rows, &device_ids) && device_ids.size() == rows.size()) {
      sampled.resize(rows.size());
      for (size_t k = 0; k < rows.size(); ++k) sampled[k].token_id = device_ids[k];
    } else {
      size_t next = 0;
      for (const SamplerRow& row : rows)
        if (!row.params->is_greedy()) *row.rng = saved[next++];
    }
  }
  if (!rows.empty() && sampled.empty()) {
    const Tensor host_logits = backend_->to_host(logits.value());
    auto result = sampler_.sample(host_logits.data<float>(), int64_t(rows.size()), vocab_size_, rows);
    if (!result.ok()) return fail_all("sampling failed: " + result.error().message);
    sampled = std::move(result.value());
  }
  std::vector<int32_t> ids;
  for (const auto& s : sampled) ids.push_back(s.token_id);

  auto finished = scheduler_->postprocess(batch, ids);
  if (!finished.ok()) return fail_all("scheduler failed: " + finished.error().message);
  {
    std::lock_guard lock(mutex_);
    num_generation_tokens_total_ += int64_t(ids.size());
  }
  // Sequences that finished this step are owned by `finished` now; their pointers stay valid.
  for (size_t k = 0; k < sampled_seqs.size(); ++k) {
    std::vector<SampledToken> one{sampled[k]};
    emit(*sampled_seqs[k], {ids[k]}, &one);
  }
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
  out.finish_reason = seq.is_finished() ? seq.finish_reason : "";
  out.num_prompt_tokens = seq.num_prompt_tokens();
  out.num_generated_tokens = seq.num_output_tokens();
  it->second.on_output(out);
  if (!out.finish_reason.empty()) {
    live_.erase(it);
    std::lock_guard lock(mutex_);
    pending_ids_.erase(seq.request_id);
  }
}

void LlmEngine::fail_all(const std::string& message) {
  if (!live_.empty()) log::get("engine")->error("{}; ending {} requests", message, live_.size());
  std::vector<std::string> ids;
  for (const auto& [id, live] : live_) ids.push_back(id);
  for (const auto& id : ids) {
    auto seq = scheduler_->abort(id);
    GenerationOutput out;
    out.finish_reason = "error";
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
}

}  // namespace troupe
