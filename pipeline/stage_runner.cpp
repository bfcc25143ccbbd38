#include "pipeline/stage_runner.hpp"

#include "pipeline/pipeline_model.hpp"
#include "pipeline/step_codec.hpp"
#include "runtime/logging.hpp"

namespace troupe::cluster {

StageRunner::StageRunner(std::unique_ptr<Backend> backend, std::unique_ptr<Model> model, KvCache cache,
                         TensorChannel from_prev, TensorChannel to_next, std::chrono::milliseconds send_timeout)
    : StageRunner(std::move(backend), std::move(model), std::move(cache),
                  std::make_unique<HostStageTransport>(std::move(from_prev)),
                  std::make_unique<HostStageTransport>(std::move(to_next)), send_timeout) {}

StageRunner::StageRunner(std::unique_ptr<Backend> backend, std::unique_ptr<Model> model, KvCache cache,
                         std::unique_ptr<StageTransport> from_prev, std::unique_ptr<StageTransport> to_next,
                         std::chrono::milliseconds send_timeout)
    : backend_(std::move(backend)),
      model_(std::move(model)),
      cache_(std::move(cache)),
      from_prev_(std::move(from_prev)),
      to_next_(std::move(to_next)),
      send_timeout_(send_timeout) {}

StageRunner::~StageRunner() { stop(); }

void StageRunner::start() {
  if (thread_.joinable()) return;
  running_ = true;
  thread_ = std::thread([this] { loop(); });
}

void StageRunner::stop() {
  stopping_ = true;
  from_prev_->abort("the stage is stopping");  // a receive inside NCCL returns at once
  to_next_->abort("the stage is stopping");
  if (thread_.joinable()) thread_.join();
  running_ = false;
}

std::string StageRunner::error() const {
  std::lock_guard lock(mutex_);
  return error_;
}

Status StageRunner::run_step(DecodedStep& step, bool* send_failed) {
  auto out = model_->forward(step.batch, cache_, step.mode);
  if (!out.ok()) return out.error();
  Status sent = model_->is_last_stage()
                    ? to_next_->send_logits(step.step_id, out.value(), *backend_, send_timeout_)
                    : to_next_->send_step(step.step_id, step.batch, step.mode, out.value(), *backend_, send_timeout_);
  if (!sent.ok()) *send_failed = true;
  return sent;
}

Status StageRunner::run_step_guarded(DecodedStep& step, bool* device_failed, bool* send_failed) {
  Status done = Status::success();
  try {
    done = run_step(step, send_failed);
  } catch (const std::exception& e) {
    done = make_error(ErrorCode::internal, std::string("exception: ") + e.what());
    *device_failed = true;
  }
  if (Status device = backend_->status(); !device.ok()) {
    *device_failed = true;
    return make_error(device.error().code, backend_->name() + " device fault: " + device.error().message);
  }
  return done;
}

void StageRunner::loop() {
  auto logger = log::get("cluster");
  const LayerRange range = model_->layer_range();
  logger->info("stage with layers [{}, {}) running: from {} to {}", range.begin, range.end, from_prev_->peer(),
               to_next_->peer());
  std::string why;
  bool device_failed = false, transport_failed = false;
  for (uint64_t step_id = 1; !stopping_.load(); ++step_id) {
    // Waits as long as it takes: an idle pipeline sends nothing. A dead peer ends the wait.
    auto step = from_prev_->receive_step(step_id, std::chrono::hours(24 * 365), stopping_);
    if (!step.ok()) {
      if (!stopping_.load()) {
        why = "receiving step " + std::to_string(step_id) + " from " + from_prev_->peer() + ": " + step.error().message;
        transport_failed = true;
      }
      break;
    }
    bool send_failed = false;
    Status done = run_step_guarded(step.value(), &device_failed, &send_failed);
    if (!done.ok()) {
      why = "step " + std::to_string(step_id) + ": " + done.error().message;
      transport_failed = send_failed && !stopping_.load();
      break;
    }
    num_steps_.fetch_add(1);
  }
  if (!why.empty()) logger->error("stage with layers [{}, {}) stopped: {}", range.begin, range.end, why);
  {
    std::lock_guard lock(mutex_);
    error_ = why;
  }
  running_ = false;
  if (device_failed && on_failure_) {
    on_failure_(why);
  } else if (transport_failed && on_transport_failure_) {
    on_transport_failure_(why);
  }
}

}  // namespace troupe::cluster
