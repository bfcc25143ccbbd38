#pragma once
// The engine's front door, as http/ (and the head's router) see it: token ids in, token ids out.
// Text (chat template, tokenizer, stop strings, detokenization) is the caller's business.
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "runtime/result.hpp"
#include "engine/finish_reason.hpp"
#include "engine/prompt_logprobs.hpp"
#include "engine/sampling_params.hpp"

namespace troupe {

struct GenerationRequest {
  std::string request_id;  // unique among live requests
  std::vector<int32_t> prompt_ids;
  SamplingParams params;
  // OpenAI's rule at the HTTP front door: prompt + max_tokens past max_model_len is an error. Off,
  // generation ends at the context with FinishReason::length. Checked where the request enters;
  // it does not travel further (not in the cluster's messages).
  bool max_tokens_must_fit = false;
};

// One event per engine step that advanced the request, and a last one with finish_reason set.
struct GenerationOutput {
  std::vector<int32_t> new_token_ids;
  std::vector<float> logprobs;                                    // per new token, when asked
  std::vector<std::vector<std::pair<int32_t, float>>> top_logprobs;  // per new token, when asked
  FinishReason finish_reason = FinishReason::none;  // none while running
  std::string error_message;                        // with FinishReason::error
  int64_t num_prompt_tokens = 0;
  int64_t num_generated_tokens = 0;  // so far, including new_token_ids
  // On the request's first output after its first scheduled step: the seconds it waited in the
  // engine before that step (vLLM's queue time); -1 on every other output.
  double queue_time_s = -1;
  int64_t num_cached_tokens = 0;     // prompt tokens found in the prefix cache at its first admission
  // params.prompt_logprobs >= 0: one entry per prompt token after the first, all in one output
  // (the first with a token, or the last); empty in every other output.
  std::vector<PromptLogprob> prompt_logprobs;
};

// Called on the engine's thread; must be quick and must not call back into the engine.
using OutputCallback = std::function<void(const GenerationOutput&)>;

// One serving group of a cluster, as /health and /metrics show it.
struct GroupStats {
  int64_t group_id = 0;
  std::string state;  // forming | loading | ready | restarting | failed
  uint64_t epoch = 0;
  int64_t num_restarts = 0;
  std::string last_error;   // why it last lost a member ("" until then)
  int64_t num_members = 0;  // slots filled
  int64_t num_running = 0;  // requests routed to it now
  // From its leader's heartbeats (stage 0's engine): KV blocks, preemptions, engine steps.
  int64_t num_kv_blocks_used = 0;
  int64_t num_kv_blocks_total = 0;
  int64_t num_preemptions_total = 0;  // summed over the group's epochs (a restart does not reset it)
  // Engine steps by batched tokens, per kIterationTokensBounds bucket (+Inf last; empty before
  // the first heartbeat), and their tokens; summed over the group's epochs as preemptions are.
  std::vector<int64_t> iteration_tokens_counts;
  int64_t iteration_tokens_sum = 0;
};

struct ClusterStats {
  bool enabled = false;  // false: one process (`troupe serve`)
  int64_t num_nodes = 0;
  int64_t num_groups_ready = 0;
  int64_t num_requests_resumed_total = 0;  // moved to another group after a loss
  std::vector<GroupStats> groups;
};

// Upper bounds of the tokens-per-engine-step histogram (vLLM's iteration_tokens_total); the
// last count is +Inf.
inline constexpr std::array<int64_t, 12> kIterationTokensBounds = {1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192};

struct EngineStats {
  int64_t num_running = 0;
  int64_t num_waiting = 0;
  int64_t num_kv_blocks_total = 0;
  int64_t num_kv_blocks_used = 0;
  int64_t num_prompt_tokens_total = 0;
  int64_t num_generation_tokens_total = 0;
  int64_t num_preemptions_total = 0;
  // Engine steps by their batched tokens: counts per kIterationTokensBounds bucket (+Inf last).
  std::array<int64_t, kIterationTokensBounds.size() + 1> iteration_tokens_counts{};
  int64_t iteration_tokens_sum = 0;
  int64_t num_prefix_cache_queries_total = 0;  // prompt tokens looked up in the prefix cache
  int64_t num_prefix_cache_hits_total = 0;     // of which found cached
  std::string failure;  // ServingEngine::failure()
  ClusterStats cluster;
};

// What a request is checked against.
struct RequestLimits {
  int64_t vocab_size = 0;     // prompt ids in [0, vocab_size)
  int64_t max_model_len = 0;  // prompt + at least one generated token
};

// The one check of a request, made once where it enters: ServingEngine::submit (LlmEngine,
// ClusterEngine; http reaches them through it and only maps the error). A non-empty prompt of ids
// inside the vocabulary that leaves room for one generated token, valid sampling parameters, and
// with max_tokens_must_fit a max_tokens that fits. Errors are invalid_argument; Error::param names
// the OpenAI field ("prompt", "max_tokens", "temperature", ...).
Status validate_generation_request(const GenerationRequest& request, const RequestLimits& limits);

class ServingEngine {
 public:
  virtual ~ServingEngine() = default;
  // invalid_argument: validate_generation_request failed; unavailable: not ready, or failed().
  virtual Status submit(GenerationRequest request, OutputCallback on_output) = 0;
  // Ends the request with FinishReason::abort and frees its KV blocks; unknown ids are ignored.
  virtual void cancel(const std::string& request_id) = 0;
  virtual EngineStats stats() const = 0;
  virtual int64_t max_model_len() const = 0;
  virtual bool is_ready() const = 0;
  // "" while the engine can serve; else why it stopped for good (a device fault, an exception on
  // its thread). A failed engine is not ready, refuses submits and stays failed: its process must be
  // restarted (a supervised worker exits non-zero; `troupe serve` answers /health with 503).
  virtual std::string failure() const { return ""; }
};

}  // namespace troupe
