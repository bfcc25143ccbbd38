#pragma once
// One HTTP generation request: submits its n engine requests (derived seeds), turns their outputs
// into per-choice deltas, observes latency metrics, and cancels whatever still runs when it is
// destroyed (client gone, server stopping).
#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "http/choice_stream.hpp"
#include "http/metrics.hpp"
#include "http/openai_request.hpp"
#include "http/output_queue.hpp"

namespace troupe::http {

struct JobSpec {
  std::string id;  // response id; engine request ids are id + "-" + choice index
  OpenAIRequest request;
  std::vector<int32_t> prompt_ids;
  std::string prompt_text;  // rendered prompt (decides whether the template opened <think>)
  std::string reasoning_parser;
  std::string echo_text;  // echo: sent before each choice's generated text
  std::vector<int64_t> eos_token_ids;  // the model's (a final one's text is left out)
  std::string tool_call_parser;  // --tool-call-parser, for tool_choice "auto"
};

class GenerationJob {
 public:
  GenerationJob(ServingEngine& engine, Metrics& metrics, const TextCodec& codec, JobSpec spec);
  ~GenerationJob();
  GenerationJob(const GenerationJob&) = delete;
  GenerationJob& operator=(const GenerationJob&) = delete;

  // Submits all choices; on an error the ones already submitted are cancelled.
  Status submit();
  // Deltas that arrived within timeout, in order, as (choice index, delta).
  std::vector<std::pair<int, ChoiceDelta>> poll(std::chrono::milliseconds timeout);
  bool is_finished() const;
  void cancel();

  const JobSpec& spec() const { return spec_; }
  std::vector<const ChoiceStream*> choices() const;
  int64_t num_prompt_tokens() const { return int64_t(spec_.prompt_ids.size()); }
  int64_t num_completion_tokens() const;
  // Prompt tokens the prefix cache held (the most any choice reported).
  int64_t num_cached_tokens() const { return num_cached_tokens_; }
  // From the job's start to its earliest first token; -1 before any token came.
  double time_to_first_token_ms() const;
  // error when any choice failed, else the first choice's (none while it runs).
  FinishReason finish_reason() const;

 private:
  ChoiceTextOptions text_options() const;
  std::string engine_id(size_t choice) const { return spec_.id + "-" + std::to_string(choice); }
  void observe(size_t choice, const QueuedOutput& item);

  ServingEngine* engine_;
  Metrics* metrics_;
  JobSpec spec_;
  std::shared_ptr<OutputQueue> queue_;
  std::vector<std::unique_ptr<ChoiceStream>> choices_;
  std::vector<bool> submitted_;
  std::vector<std::chrono::steady_clock::time_point> last_output_at_;  // [n]
  std::vector<bool> got_first_token_;
  std::vector<FinishedRequestTimes> times_;  // [n], filled as outputs come
  std::chrono::steady_clock::time_point started_at_;
  std::chrono::steady_clock::time_point first_token_at_{};  // {}: no token yet
  int64_t num_cached_tokens_ = 0;
};

}  // namespace troupe::http
