#pragma once
// The engine's front door, as http/ (and the head's router) see it: token ids in, token ids out.
// Text (chat template, tokenizer, stop strings, detokenization) is the caller's business.
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/result.hpp"
#include "engine/sampling_params.hpp"

namespace troupe {

struct GenerationRequest {
  std::string request_id;  // unique among live requests
  std::vector<int32_t> prompt_ids;
  SamplingParams params;
};

// One event per engine step that advanced the request, and a last one with finish_reason set.
struct GenerationOutput {
  std::vector<int32_t> new_token_ids;
  std::vector<float> logprobs;                                    // per new token, when asked
  std::vector<std::vector<std::pair<int32_t, float>>> top_logprobs;  // per new token, when asked
  std::string finish_reason;  // "" while running; "stop" | "length" | "abort" | "error"
  std::string error_message;  // with finish_reason "error"
  int64_t num_prompt_tokens = 0;
  int64_t num_generated_tokens = 0;  // so far, including new_token_ids
};

// Called on the engine's thread; must be quick and must not call back into the engine.
using OutputCallback = std::function<void(const GenerationOutput&)>;

// One serving group of a cluster, as /health and /metrics show it.
struct GroupStats {
  int64_t group_id = 0;
  std::string state;  // forming | loading | ready | restarting | failed
  uint64_t epoch = 0;
  int64_t num_restarts = 0;
  int64_t num_members = 0;  // slots filled
  int64_t num_running = 0;  // requests routed to it now
};

struct ClusterStats {
  bool enabled = false;  // false: one process (`troupe serve`)
  int64_t num_nodes = 0;
  int64_t num_groups_ready = 0;
  int64_t num_requests_resumed_total = 0;  // moved to another group after a loss
  std::vector<GroupStats> groups;
};

struct EngineStats {
  int64_t num_running = 0;
  int64_t num_waiting = 0;
  int64_t num_kv_blocks_total = 0;
  int64_t num_kv_blocks_used = 0;
  int64_t num_prompt_tokens_total = 0;
  int64_t num_generation_tokens_total = 0;
  int64_t num_preemptions_total = 0;
  ClusterStats cluster;
};

// The checks every engine makes at submit: a non-empty prompt of ids inside the vocabulary that
// leaves room for one generated token, valid sampling parameters. Errors are invalid_argument.
Status validate_generation_request(const GenerationRequest& request, int64_t vocab_size, int64_t max_model_len);

class ServingEngine {
 public:
  virtual ~ServingEngine() = default;
  // invalid_argument: prompt empty or longer than max_model_len, bad params; unavailable: not ready.
  virtual Status submit(GenerationRequest request, OutputCallback on_output) = 0;
  // Ends the request with finish_reason "abort" and frees its KV blocks; unknown ids are ignored.
  virtual void cancel(const std::string& request_id) = 0;
  virtual EngineStats stats() const = 0;
  virtual int64_t max_model_len() const = 0;
  virtual bool is_ready() const = 0;
};

}  // namespace troupe
