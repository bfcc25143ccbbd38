#include "pipeline/stage_runner.hpp"

#include "pipeline/pipeline_model.hpp"
#include "pipeline/step_codec.hpp"
#include "runtime/logging.hpp"

namespace troupe::cluster {

StageRunner::StageRunner(std::unique_ptr<Backend> backend, std::unique_ptr<Model> model, KvCache cache,
                         TensorChannel from_prev, TensorChannel to_next, std::chrono::milliseconds send_timeout)
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
  if (thread_.joinable()) thread_.join();
  running_ = false;
}

std::string StageRunner::error() const {
  std::lock_guard lock(mutex_);
  return error_;
}

Status StageRunner::run_step(uint64_t step_id, const std::vector<uint8_t>& bytes) {
  auto step = decode_step(bytes);
  if (!step.ok()) return step.error();
  if (step->step_id != step_id)
    return make_error(ErrorCode::internal, "step " + std::to_string(step->step_id) + " arrived under tag " +
                                               std::to_string(step_id));
  auto out = model_->forward(step->batch, cache_, step->mode);
  if (!out.ok()) return out.error();
  const Tensor host = backend_->to_host(out.value());
  const std::vector<uint8_t> reply = model_->is_last_stage() ? encode_logits(step_id, host)
                                                             : encode_step(step_id, step->batch, step->mode, host);
  return to_next_.send(step_id, reply.data(), reply.size(), send_timeout_);
}

Status StageRunner::run_step_guarded(uint64_t step_id, const std::vector<uint8_t>& bytes, bool* device_failed) {
  Status done = Status::success();
  try {
    done = run_step(step_id, bytes);
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
  logger->info("stage with layers [{}, {}) running: from {} to {}", range.begin, range.end, from_prev_.peer(),
               to_next_.peer());
  std::string why;
  bool device_failed = false;
  for (uint64_t step_id = 1; !stopping_.load(); ++step_id) {
    // Waits as long as it takes: an idle pipeline sends nothing. A dead peer ends the wait.
    auto bytes = receive_message(from_prev_, step_id, std::chrono::hours(24 * 365), stopping_);
    if (!bytes.ok()) {
      if (!stopping_.load()) why = "receiving step " + std::to_string(step_id) + ": " + bytes.error().message;
      break;
    }
    Status done = run_step_guarded(step_id, bytes.value(), &device_failed);
    if (!done.ok()) {
      why = "step " + std::to_string(step_id) + ": " + done.error().message;
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
  if (device_failed && on_failure_) on_failure_(why);
}

}  // namespace troupe::cluster
