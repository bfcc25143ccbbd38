#pragma once
// One sequence's place in its grammar: accepts sampled tokens (advancing by their bytes) and
// fills the mask of the tokens allowed next. EOS is allowed exactly where the grammar may end,
// and is all that is allowed once nothing else may follow (or once the output is complete).
//
//   running --accept(EOS) at an accepting state--> terminated
//
// The state is a function of the tokens accepted: after a preemption, replaying output_ids
// rebuilds it (or keep the matcher: it does not depend on the KV cache).
#include <cstdint>
#include <memory>
#include <string_view>

#include "grammar/compiled_grammar.hpp"

namespace troupe::grammar {

class GrammarMatcher {
 public:
  explicit GrammarMatcher(std::shared_ptr<CompiledGrammar> grammar) : grammar_(std::move(grammar)) { reset(); }

  // False (state unchanged) when the grammar does not allow `token_id` here.
  bool accept_token(int32_t token_id);
  bool accept_bytes(std::string_view bytes);
  // words: [vocab().num_mask_words()], overwritten.
  void fill_next_token_mask(uint32_t* words);
  bool is_accepting() const { return terminated_ || grammar_->automaton().is_accepting(state_); }
  bool is_terminated() const { return terminated_; }
  void reset();

  const TokenVocabulary& vocab() const { return grammar_->vocab(); }
  int32_t state() const { return state_; }

 private:
  std::shared_ptr<CompiledGrammar> grammar_;
  int32_t state_ = 0;
  bool terminated_ = false;
};

}  // namespace troupe::grammar
