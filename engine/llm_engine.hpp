#pragma once
// The engine of one process: model + paged KV cache + scheduler + sampler, driven by one loop
// thread. Each step is Scheduler::schedule -> ModelRunner::run -> SamplingStep::sample ->
// postprocess; outputs go to each request's callback. Implements the ServingEngine front door
// (thread-safe submit/cancel/stats).
//
// Steps in flight: over a model that takes k steps at once (a pipeline of k stages, see
// runtime/async_steps.hpp), the loop keeps up to k batches of different sequences started (vLLM's
// virtual engines): each batch holds at most ceil(live sequences / k) of them, so the running
// sequences fall into k sets, and a set's next step is scheduled once its previous step's logits
// came back and were sampled. Every stage then works on every step:
//
//   fill: while fewer than k started: schedule (skips sequences in flight) -> ModelRunner::start
//   then: ModelRunner::finish(oldest) -> sample -> postprocess -> fill again
//
// A cancel of a sequence in flight waits for its batch's postprocess (its Sequence stays alive
// while the step uses it).
//
// Overlapped scheduling (Config::async_scheduling, a model of one stage): every forward and
// sampling runs on a StepWorker thread (engine/step_worker.hpp), and the loop keeps one step
// running there while it schedules the next and postprocesses the last:
//
//   schedule N+1 (its decodes take step N's samples: Scheduler::schedule's ahead_of) -> submit
//   -> wait for N -> postprocess N (stop checks, callbacks) -> schedule N+2 ...
//
// A sequence that stopped at N has its row of N+1 dropped (its Sequence kept alive until N+1 is
// done). Sequences that need the host between steps (Sequence::can_run_ahead: a grammar's mask
// needs the last token accepted) are scheduled one step later, so every sequence is fed the same
// tokens as without overlap; a step's grammar masks are computed when it is scheduled and copied
// into the step.
//
// The error boundary: after the forward and after sampling the engine reads Backend::status();
// a device fault there, or an exception on the loop thread (std::bad_alloc from a device
// allocation), fails every live request (FinishReason::error, the message naming the op), marks
// the engine failed (failure(), not ready, submits refused as unavailable), calls on_failure and
// ends the loop thread. A forward that returns an error with the device healthy (a pipeline peer
// gone) fails the live requests only; the engine keeps serving.
//
//   running --device fault / exception--> failed (thread ended; the process must restart)
//      \--stop()--> stopped
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "runtime/backend.hpp"
#include "runtime/config.hpp"
#include "runtime/kv_cache.hpp"
#include "runtime/model.hpp"
#include "engine/constrained_decoding.hpp"
#include "engine/model_runner.hpp"
#include "engine/sampling_step.hpp"
#include "engine/scheduler.hpp"
#include "engine/serving_engine.hpp"
#include "engine/step_worker.hpp"

namespace troupe {

// --max-model-len, or the model's max_position_embeddings when it is 0; an error when larger.
Result<int64_t> resolve_max_model_len(const Config& config, const ModelConfig& model_config);

class LlmEngine final : public ServingEngine {
 public:
  // An engine over a built model (build_engine in backends/ assembles one; a pipeline's first stage
  // wraps the others) with a KV cache of `num_kv_blocks` blocks (the group agrees on one count: see
  // kv_blocks_that_fit). Errors name the flag.
  static Result<std::unique_ptr<LlmEngine>> create(const Config& config, std::unique_ptr<Backend> backend,
                                                   std::unique_ptr<Model> model, int64_t num_kv_blocks);
  ~LlmEngine() override;

  // Called once, on the loop thread, when the engine fails (see above); set before start().
  void set_on_failure(std::function<void(const std::string& why)> on_failure) { on_failure_ = std::move(on_failure); }
  void start();  // starts the loop thread
  void stop();   // aborts what is left, joins the thread

  Status submit(GenerationRequest request, OutputCallback on_output) override;
  void cancel(const std::string& request_id) override;
  EngineStats stats() const override;
  int64_t max_model_len() const override { return max_model_len_; }
  bool is_ready() const override { return running_.load() && !failed_.load(); }
  std::string failure() const override;

  const ModelConfig& model_config() const { return model_->config(); }
  std::string backend_name() const { return backend_->name(); }
  int64_t max_steps_in_flight() const { return max_steps_in_flight_; }
  // Steps started while an earlier one was still in flight (0 when one at a time).
  int64_t num_overlapped_steps() const { return num_overlapped_steps_.load(); }
  int64_t num_kv_blocks() const { return num_kv_blocks_; }
  // Overlapped scheduling (Config::async_scheduling) is on: steps run on a StepWorker.
  bool is_overlapping() const { return worker_ != nullptr; }
  // Steps run, and the seconds spent running their forward and sampling (on the worker when
  // overlapping, else on the loop thread): the rest of the wall time the device waited for the host.
  int64_t num_steps() const { return num_steps_.load(); }
  double step_busy_seconds() const { return worker_ ? worker_->busy_seconds() : step_busy_ns_.load() * 1e-9; }

 private:
  struct Inbox {
    std::vector<std::pair<Sequence, OutputCallback>> added;
    std::vector<std::string> cancelled;
  };
  struct Live {
    OutputCallback on_output;
    std::chrono::steady_clock::time_point added_at = std::chrono::steady_clock::now();
    double queue_time_s = -1;  // set at its first scheduled step, sent once with the next output
    bool queue_time_sent = false;
  };

  // A step on the StepWorker (overlapped scheduling): its input, then (on the worker) its results.
  struct WorkerJob {
    PreparedStep prepared;
    std::optional<Result<ModelOutput>> output;
    std::optional<Result<std::vector<SampledToken>>> sampled;
    Status device = Status::success();  // Backend::status() after the step, read on the worker
    std::vector<std::vector<uint32_t>> masks;  // the rows' grammar masks (SamplerRow::allowed)
  };

  // A started step, oldest first in in_flight_.
  struct InFlight {
    ScheduledBatch batch;
    StartedStep started;
    bool masks_started = false;  // ConstrainedDecoding::start_masks ran for this batch
    // Overlapped scheduling: the step on the worker, and sequences that finished while it reads them.
    std::unique_ptr<WorkerJob> job;
    std::future<void> done;
    std::vector<std::unique_ptr<Sequence>> keep_alive;
  };

  LlmEngine() = default;
  void loop();
  void take_inbox();
  // Aborts the request now, or after its batch when it is in flight.
  void cancel_now_or_later(const std::string& request_id);
  // Finishes (or, with the engine failed, drops) every step in flight without using its output.
  void drain_in_flight();
  // Starts steps up to max_steps_in_flight_, then finishes the oldest: schedule, run, sample,
  // postprocess. An error is fatal: the device failed.
  Status step();
  // Overlapped scheduling's step (see above); the next three are its parts.
  Status overlapped_step();
  void start_on_worker(ScheduledBatch batch);
  Status finish_on_worker();  // waits for the oldest step, postprocesses it
  std::vector<int32_t> run_on_worker(WorkerJob& job, const std::vector<int32_t>& previous_samples);  // worker thread
  // finished: sequences that ended here are moved there when given (else they are destroyed).
  Status postprocess(const ScheduledBatch& batch, const ModelOutput& output, const std::vector<SampledToken>& sampled,
                     std::vector<std::unique_ptr<Sequence>>* finished = nullptr);
  Status check_device(const char* during) const;
  void fail_engine(const std::string& why);
  // Queue times of sequences scheduled for the first time; the step's batched tokens.
  void observe_scheduled(const ScheduledBatch& batch);
  void emit(Sequence& seq, std::vector<int32_t> new_ids, const std::vector<SampledToken>* sampled);
  void fail_all(const std::string& message);
  void publish_stats();

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<ModelRunner> runner_;
  std::unique_ptr<SamplingStep> sampling_;
  std::unique_ptr<ConstrainedDecoding> constrained_;
  std::function<void(const std::string&)> on_failure_;
  int64_t max_model_len_ = 0;
  int64_t num_kv_blocks_ = 0;
  int64_t vocab_size_ = 0;
  std::unordered_map<std::string, Live> live_;  // engine thread only
  int64_t max_steps_in_flight_ = 1;
  std::deque<InFlight> in_flight_;               // engine thread only
  std::atomic<int64_t> num_overlapped_steps_{0};
  std::vector<std::string> deferred_cancels_;    // engine thread only: cancelled while in flight
  std::atomic<int64_t> num_steps_{0};
  std::atomic<int64_t> step_busy_ns_{0};         // without a worker
  std::unique_ptr<StepWorker> worker_;           // overlapped scheduling; destroyed before the model

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  Inbox inbox_;
  std::unordered_set<std::string> pending_ids_;  // submitted, not finished (for duplicates)
  bool stopping_ = false;
  std::atomic<bool> running_{false};
  std::atomic<bool> failed_{false};
  std::string failure_;  // under mutex_
  std::thread thread_;
  EngineStats stats_;  // under mutex_
  int64_t num_prompt_tokens_total_ = 0;
  int64_t num_generation_tokens_total_ = 0;
  std::array<int64_t, kIterationTokensBounds.size() + 1> iteration_tokens_counts_{};  // under mutex_
  int64_t iteration_tokens_sum_ = 0;                                                  // under mutex_
};

}  // namespace troupe
