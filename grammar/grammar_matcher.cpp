#include "grammar/grammar_matcher.hpp"

#include <algorithm>
#include <cstring>

namespace troupe::grammar {

void GrammarMatcher::reset() {
  state_ = grammar_->automaton().start();
  terminated_ = false;
}

bool GrammarMatcher::accept_token(int32_t token_id) {
  const TokenVocabulary& v = grammar_->vocab();
  if (token_id < 0 || token_id >= v.size()) return false;
  if (v.is_eos(token_id)) {
    // Also where no token could continue (a dead end the vocabulary cannot spell): EOS ends it.
    if (!is_accepting() && grammar_->has_tokens(state_)) return false;
    terminated_ = true;
    return true;
  }
  if (terminated_) return false;
  const std::string& b = v.token_bytes(token_id);
  if (b.empty()) return false;
  return accept_bytes(b);
}

bool GrammarMatcher::accept_bytes(std::string_view bytes) {
  if (terminated_) return false;
  int32_t s = state_;
  ByteAutomaton& a = grammar_->automaton();
  for (unsigned char c : bytes) {
    s = a.step(s, c);
    if (s == ByteAutomaton::kDead) return false;
  }
  state_ = s;
  return true;
}

void GrammarMatcher::fill_next_token_mask(uint32_t* words) {
  const TokenVocabulary& v = grammar_->vocab();
  const size_t n = size_t(v.num_mask_words());
  bool allow_eos = true;
  if (terminated_) {
    std::memset(words, 0, n * sizeof(uint32_t));
  } else {
    std::memcpy(words, grammar_->token_mask(state_), n * sizeof(uint32_t));
    allow_eos = is_accepting() || !grammar_->has_tokens(state_);
  }
  if (allow_eos)
    for (int32_t id : v.eos_ids()) words[id >> 5] |= uint32_t(1) << (id & 31);
}

}  // namespace troupe::grammar
