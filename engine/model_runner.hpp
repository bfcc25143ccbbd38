#pragma once
// ModelRunner: the engine step's `run`: builds the ForwardBatch of a scheduled batch (tokens,
// positions, block tables) and runs the model over the engine's KV cache, returning the logits of
// the rows to sample with their sequences. A model that is an AsyncSteps (a pipeline) runs a step
// in two halves, start and finish, so the engine can keep several steps in flight.
//
// greedy_generate: a minimal single-sequence greedy generator over a whole model (one stage): prefill the prompt,
// then decode one token per step, with the sequence's blocks allocated in order from a private
// paged cache. For tests, benches and `troupe generate`; serving goes through the scheduler.
#include <cstdint>
#include <vector>

#include "runtime/async_steps.hpp"
#include "runtime/backend.hpp"
#include "runtime/model.hpp"
#include "engine/scheduler.hpp"

namespace troupe {

// What one forward gives the sampler: the rows to sample, in batch order.
struct ModelOutput {
  Tensor logits;                     // [rows.size(), vocab] fp32, on the model's device
  std::vector<SamplerRow> rows;      // borrow each sequence's params, history and RNG
  std::vector<Sequence*> sequences;  // rows[k] belongs to sequences[k]
};

// A sequence's prompt positions whose logits a step computes for its prompt logprobs.
struct PromptRows {
  Sequence* seq;
  int64_t first_position;  // the logits of positions [first_position, + count) give the
  int64_t count;           // logprobs of prompt tokens first_position + 1 ...
};

// A step between start and finish: the rows to sample now, the logits once finished.
struct StartedStep {
  ModelOutput output;
  std::vector<PromptRows> prompt_rows;  // after the sampler's rows in the logits
  uint64_t ticket = 0;  // the AsyncSteps model's
  bool done = false;    // output.logits are there (a model that is not an AsyncSteps ran it whole)
};

// A step's model input built on the engine thread, to be run (maybe on another thread) by launch.
struct PreparedStep {
  StartedStep step;
  ForwardBatch forward;
  // Own copies of the block tables (prepare's own_tables): the scheduler may grow them meanwhile.
  std::vector<std::vector<int32_t>> block_tables;
  // Overlapped scheduling: forward.token_ids[index] is the token sampled for `previous_row` of
  // the step before (ScheduledEntry::previous_row); launch's caller fills them in first.
  struct InputFromPrevious {
    int64_t index;
    int32_t previous_row;
  };
  std::vector<InputFromPrevious> inputs_from_previous;
};

class ModelRunner {
 public:
  ModelRunner(Model& model, KvCache& cache, Backend& backend)
      : model_(&model), cache_(&cache), backend_(&backend), async_(dynamic_cast<AsyncSteps*>(&model)) {}

  // Steps that may be started before the first is finished: 1 unless the model is an AsyncSteps.
  int64_t max_steps_in_flight() const { return async_ ? async_->max_steps_in_flight() : 1; }
  // The batch's new tokens through the model. Errors are the model's (forward failed). Sequences
  // that still need prompt logprobs get the entries of this step's positions appended
  // (Sequence::prompt_logprobs; engine/prompt_logprobs.hpp) when the step finishes.
  Result<ModelOutput> run(const ScheduledBatch& batch, const BlockManager& blocks);
  // run in two halves; steps are finished in the order they were started.
  Result<StartedStep> start(const ScheduledBatch& batch, const BlockManager& blocks);
  Result<ModelOutput> finish(StartedStep step);
  // start in two halves: the input on the engine thread, then the model.
  PreparedStep prepare(const ScheduledBatch& batch, const BlockManager& blocks, bool own_tables = false);
  Result<StartedStep> launch(PreparedStep& prepared);

 private:
  void append_prompt_logprobs(const Tensor& logits, const std::vector<PromptRows>& spans);

  Model* model_;
  KvCache* cache_;
  Backend* backend_;
  AsyncSteps* async_;  // model_ as an AsyncSteps, or null
};

struct GreedyResult {
  std::vector<int32_t> tokens;                    // generated ids (no prompt), max_new_tokens of them
  std::vector<std::vector<float>> prompt_logits;  // [prompt_len][vocab] when asked for
};

// Stops after max_new_tokens (no EOS check: callers trim). Errors: empty prompt, a model that is
// not a whole model, an invalid token id.
Result<GreedyResult> greedy_generate(Model& model, Backend& backend, const std::vector<int32_t>& prompt,
                                     int64_t max_new_tokens, int64_t block_size = 16,
                                     bool want_prompt_logits = false);

}  // namespace troupe
