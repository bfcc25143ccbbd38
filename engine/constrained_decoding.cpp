#include "engine/constrained_decoding.hpp"

#include "engine/model_runner.hpp"
#include "runtime/logging.hpp"

namespace troupe {
namespace {

constexpr size_t kMaxGrammars = 64;

grammar::GrammarKind to_grammar_kind(OutputConstraint::Kind kind) {
  switch (kind) {
    case OutputConstraint::Kind::json_object: return grammar::GrammarKind::json_object;
    case OutputConstraint::Kind::regex: return grammar::GrammarKind::regex;
    case OutputConstraint::Kind::choice: return grammar::GrammarKind::choice;
    default: return grammar::GrammarKind::json_schema;
  }
}

}  // namespace

Status validate_output_constraint(const OutputConstraint& constraint) {
  if (constraint.is_none()) return Status::success();
  return grammar::check_grammar(to_grammar_kind(constraint.kind), constraint.spec);
}

ConstrainedDecoding::~ConstrainedDecoding() {
  if (running_.valid()) running_.wait();
}

Result<std::shared_ptr<grammar::GrammarMatcher>> ConstrainedDecoding::matcher_for(const OutputConstraint& constraint) {
  for (auto it = cache_.begin(); it != cache_.end(); ++it) {
    if (it->kind == constraint.kind && it->spec == constraint.spec) {
      cache_.splice(cache_.begin(), cache_, it);
      return std::make_shared<grammar::GrammarMatcher>(cache_.front().grammar);
    }
  }
  if (!vocab_) {
    auto vocab = grammar::TokenVocabulary::from_tokenizer_json(tokenizer_json_, vocab_size_, eos_ids_);
    if (!vocab.ok())
      return make_error(ErrorCode::unsupported,
                        "structured outputs need the model's tokenizer.json: " + vocab.error().message);
    vocab_ = vocab.value();
    log::get("engine")->info("structured outputs: {} token ids as bytes, a trie of {} nodes", vocab_->size(),
                             vocab_->trie().size());
  }
  auto automaton = grammar::compile_grammar(to_grammar_kind(constraint.kind), constraint.spec);
  if (!automaton.ok()) return automaton.error();
  auto compiled = std::make_shared<grammar::CompiledGrammar>(std::move(automaton.value()), vocab_);
  cache_.push_front(Cached{constraint.kind, constraint.spec, compiled});
  if (cache_.size() > kMaxGrammars) cache_.pop_back();
  return std::make_shared<grammar::GrammarMatcher>(compiled);
}

void ConstrainedDecoding::start_masks(const ScheduledBatch& batch) {
  pending_.clear();
  for (const ScheduledEntry& entry : batch.entries)
    if (entry.produces_token && entry.seq->matcher) pending_.push_back(entry.seq);
  if (pending_.empty() || !vocab_) return;
  const size_t words = size_t(vocab_->num_mask_words());
  masks_.resize(pending_.size() * words);
  // NOTE: the grammars and matchers are touched by this thread only until finish_masks joins it.
  running_ = std::async(std::launch::async, [this, words] {
    for (size_t k = 0; k < pending_.size(); ++k) pending_[k]->matcher->fill_next_token_mask(masks_.data() + k * words);
  });
}

void ConstrainedDecoding::finish_masks(ModelOutput& output) {
  if (!running_.valid()) return;
  running_.get();
  const size_t words = size_t(vocab_->num_mask_words());
  for (size_t r = 0; r < output.sequences.size(); ++r) {
    for (size_t k = 0; k < pending_.size(); ++k) {
      if (pending_[k] != output.sequences[r]) continue;
      output.rows[r].allowed = masks_.data() + k * words;
      output.rows[r].num_allowed_words = int64_t(words);
      break;
    }
  }
}

}  // namespace troupe
