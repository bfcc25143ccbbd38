#include "tests/http/fake_engine.hpp"

namespace troupe::testing {

FakeEngine::FakeEngine(FakeEngineOptions options) : options_(std::move(options)) {
  thread_ = std::thread([this] { run(); });
}

FakeEngine::~FakeEngine() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

int64_t FakeEngine::blocks_for(int64_t num_tokens) const {
  return (num_tokens + options_.block_size - 1) / options_.block_size;
}

Status FakeEngine::submit(GenerationRequest request, OutputCallback on_output) {
  if (!ready_) return make_error(ErrorCode::unavailable, "fake engine not ready");
  // The front door's one request check, as every ServingEngine makes it.
  TROUPE_TRY(validate_generation_request(request, RequestLimits{options_.vocab_size, options_.max_model_len}));
  std::lock_guard<std::mutex> lock(mutex_);
  if (live_.count(request.request_id)) return make_error(ErrorCode::invalid_argument, "duplicate request id");
  submitted_.push_back(request);
  Live live;
  live.num_blocks = blocks_for(int64_t(request.prompt_ids.size()));
  totals_.num_prompt_tokens_total += int64_t(request.prompt_ids.size());
  live.request = std::move(request);
  live.on_output = std::move(on_output);
  std::string id = live.request.request_id;
  live_.emplace(id, std::move(live));
  wake_.notify_all();
  return Status::success();
}

void FakeEngine::cancel(const std::string& request_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(request_id);
  if (it != live_.end()) it->second.cancelled = true;
  wake_.notify_all();
}

void FakeEngine::step(Live& live, GenerationOutput& out) {
  const std::string& script = options_.script;
  const SamplingParams& p = live.request.params;
  out.num_prompt_tokens = int64_t(live.request.prompt_ids.size());
  for (int t = 0; t < options_.tokens_per_step; ++t) {
    int64_t i = live.num_generated;
    if (options_.fail_after >= 0 && i >= options_.fail_after) {
      out.finish_reason = FinishReason::error;
      out.error_message = "fake engine failure";
      break;
    }
    if (!script.empty() && i >= int64_t(script.size()) && !p.ignore_eos) {
      out.finish_reason = FinishReason::stop;
      break;
    }
    int32_t id = script.empty() ? letter(p.seed, i) : int32_t(static_cast<unsigned char>(script[i % script.size()]));
    out.new_token_ids.push_back(id);
    if (p.logprobs >= 0) {
      out.logprobs.push_back(-1.0f);
      std::vector<std::pair<int32_t, float>> top;
      for (int64_t k = 0; k < p.logprobs; ++k) top.emplace_back(int32_t('a' + k), -1.0f - float(k));
      out.top_logprobs.push_back(top);
    }
    ++live.num_generated;
    ++totals_.num_generation_tokens_total;
    if (live.num_generated >= p.max_tokens) {
      out.finish_reason = FinishReason::length;
      break;
    }
  }
  if (!script.empty() && out.finish_reason == FinishReason::none && live.num_generated >= int64_t(script.size()) && !p.ignore_eos)
    out.finish_reason = FinishReason::stop;
  out.num_generated_tokens = live.num_generated;
  live.num_blocks = blocks_for(out.num_prompt_tokens + live.num_generated);
}

void FakeEngine::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    wake_.wait(lock, [&] { return stopping_ || !live_.empty(); });
    if (stopping_) return;
    int64_t num_stepped = 0;
    for (auto it = live_.begin(); it != live_.end();) {
      Live& live = it->second;
      GenerationOutput out;
      if (!live.cancelled && options_.max_running > 0 && num_stepped >= options_.max_running) {
        ++it;  // waiting for a slot
        continue;
      }
      ++num_stepped;
      if (live.cancelled) {
        out.finish_reason = FinishReason::abort;
        out.num_prompt_tokens = int64_t(live.request.prompt_ids.size());
        out.num_generated_tokens = live.num_generated;
      } else {
        step(live, out);
      }
      live.on_output(out);
      it = out.finish_reason == FinishReason::none ? std::next(it) : live_.erase(it);
    }
    if (options_.step_delay.count() > 0) wake_.wait_for(lock, options_.step_delay, [&] { return stopping_; });
  }
}

EngineStats FakeEngine::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  EngineStats s = totals_;
  s.num_running = int64_t(live_.size());
  if (options_.max_running > 0 && s.num_running > options_.max_running) {
    s.num_waiting = s.num_running - options_.max_running;
    s.num_running = options_.max_running;
  }
  s.num_kv_blocks_total = options_.num_kv_blocks_total;
  for (const auto& [id, live] : live_) s.num_kv_blocks_used += live.num_blocks;
  return s;
}

std::vector<GenerationRequest> FakeEngine::submitted() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return submitted_;
}

bool FakeEngine::wait_until_idle(std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    EngineStats s = stats();
    if (s.num_kv_blocks_used == 0 && s.num_running == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

}  // namespace troupe::testing
