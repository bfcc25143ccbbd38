#pragma once
// A deterministic ServingEngine for the HTTP tests. Output: the bytes of `script` (then "stop",
// like an EOS), or when script is empty the letters 'a' + (seed + i) % 26 until max_tokens.
// One engine thread emits tokens_per_step tokens per request every step_delay. KV blocks are
// counted as the real engine would (ceil(tokens / block_size)) so leaks show in stats().
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "engine/serving_engine.hpp"

namespace troupe::testing {

struct FakeEngineOptions {
  std::string script;
  int tokens_per_step = 1;
  std::chrono::milliseconds step_delay{0};
  int64_t max_model_len = 256;
  int64_t vocab_size = 256;  // FakeTextCodec's
  int64_t block_size = 4;
  int64_t num_kv_blocks_total = 4096;
  int64_t fail_after = -1;
  int64_t max_running = 0;  // > 0: requests past this many wait (stats().num_waiting), oldest first  // >= 0: a request ends with FinishReason::error after this many tokens
};

class FakeEngine final : public ServingEngine {
 public:
  explicit FakeEngine(FakeEngineOptions options);
  ~FakeEngine() override;

  Status submit(GenerationRequest request, OutputCallback on_output) override;
  void cancel(const std::string& request_id) override;
  EngineStats stats() const override;
  int64_t max_model_len() const override { return options_.max_model_len; }
  bool is_ready() const override { return ready_; }

  void set_ready(bool ready) { ready_ = ready; }
  // The requests submitted so far (for checking derived seeds and parameters).
  std::vector<GenerationRequest> submitted() const;
  // Token i of a request with this seed when the script is empty.
  static int32_t letter(int64_t seed, int64_t i) { return int32_t('a' + ((seed < 0 ? 0 : seed) + i) % 26); }
  // Waits (bounded) until no KV block is in use; true when that happened.
  bool wait_until_idle(std::chrono::milliseconds timeout) const;

 private:
  struct Live {
    GenerationRequest request;
    OutputCallback on_output;
    int64_t num_generated = 0;
    int64_t num_blocks = 0;
    bool cancelled = false;
  };
  void run();
  void step(Live& live, GenerationOutput& out);
  int64_t blocks_for(int64_t num_tokens) const;

  FakeEngineOptions options_;
  std::atomic<bool> ready_{true};
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::map<std::string, Live> live_;
  std::vector<GenerationRequest> submitted_;
  EngineStats totals_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace troupe::testing
