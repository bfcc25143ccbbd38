#pragma once
// Structured outputs in the engine: an OutputConstraint becomes a grammar (compiled once per
// spec and cached), each constrained sequence gets a matcher, and each step's token masks are
// computed on a helper thread while the forward runs, then applied before sampling.
//
//   take_inbox: matcher_for(constraint) --> Sequence::matcher
//   step: start_masks(batch) --> ModelRunner::run --> finish_masks(rows) --> SamplingStep (mask first)
//   postprocess: matcher->accept_token(sampled id)
//
// The vocabulary (token bytes) is read from the model folder's tokenizer.json at the first
// constrained request. A preempted sequence keeps its matcher: its state is a function of the
// output ids, which preemption keeps.
#include <cstdint>
#include <future>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "engine/sampling_params.hpp"
#include "engine/scheduler.hpp"
#include "grammar/grammar_matcher.hpp"
#include "runtime/result.hpp"

namespace troupe {

struct ModelOutput;

// Compiles the constraint without a vocabulary: invalid_argument naming what in the spec is
// wrong, so a request is refused before it enters an engine.
Status validate_output_constraint(const OutputConstraint& constraint);

class ConstrainedDecoding {
 public:
  ConstrainedDecoding(std::string tokenizer_json, int64_t vocab_size, std::vector<int32_t> eos_ids)
      : tokenizer_json_(std::move(tokenizer_json)), vocab_size_(vocab_size), eos_ids_(std::move(eos_ids)) {}
  ~ConstrainedDecoding();

  // Engine thread, outside a step.
  Result<std::shared_ptr<grammar::GrammarMatcher>> matcher_for(const OutputConstraint& constraint);
  // Starts computing the masks of the batch's constrained sequences that produce a token.
  void start_masks(const ScheduledBatch& batch);
  // Waits for them and points each constrained row of `output` at its mask.
  void finish_masks(ModelOutput& output);
  int64_t num_cached_grammars() const { return int64_t(cache_.size()); }

 private:
  struct Cached {
    OutputConstraint::Kind kind;
    std::string spec;
    std::shared_ptr<grammar::CompiledGrammar> grammar;
  };

  std::string tokenizer_json_;
  int64_t vocab_size_;
  std::vector<int32_t> eos_ids_;
  std::shared_ptr<const grammar::TokenVocabulary> vocab_;
  std::list<Cached> cache_;  // most recently used first, at most kMaxGrammars
  std::vector<Sequence*> pending_;  // the sequences start_masks covers, in mask order
  std::vector<uint32_t> masks_;     // [pending_.size(), words]
  std::future<void> running_;
};

}  // namespace troupe
