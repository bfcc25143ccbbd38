#pragma once
// A constraint compiled for one vocabulary: the byte automaton plus a cache of token masks, one
// per automaton state (every language here is regular, so the mask of a state is the same
// whatever came before: computed once by walking the token trie with the automaton, pruning
// dead prefixes, then copied).
//
//   compile_grammar(kind, spec) --> ByteAutomaton --CompiledGrammar(vocab)--> masks per state
//
// NOTE: not thread-safe (the automaton and the cache grow lazily): one thread at a time.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "grammar/byte_automaton.hpp"
#include "grammar/json_schema_compiler.hpp"
#include "grammar/token_vocabulary.hpp"
#include "runtime/result.hpp"

namespace troupe::grammar {

enum class GrammarKind : uint8_t { json_object, json_schema, regex, choice };

// The constraint's automaton; errors (invalid_argument) say what in the spec is wrong.
Result<std::unique_ptr<ByteAutomaton>> compile_grammar(GrammarKind kind, const std::string& spec,
                                                       const JsonGrammarOptions& options = {});

// The same checks as compile_grammar without building the automaton (http's validation).
Status check_grammar(GrammarKind kind, const std::string& spec, const JsonGrammarOptions& options = {});

class CompiledGrammar {
 public:
  CompiledGrammar(std::unique_ptr<ByteAutomaton> automaton, std::shared_ptr<const TokenVocabulary> vocab,
                  int64_t max_cached_masks = 4096);

  ByteAutomaton& automaton() { return *automaton_; }
  const TokenVocabulary& vocab() const { return *vocab_; }
  // The ids whose bytes the automaton accepts from `state` (EOS not included):
  // [vocab.num_mask_words()] words, bit i of word w = id 32 w + i. Valid until the next call.
  const uint32_t* token_mask(int32_t state);
  // Whether any non-special token may follow `state` (computes its mask).
  bool has_tokens(int32_t state);
  int64_t num_cached_masks() const { return num_cached_; }

 private:
  void walk(int32_t state, uint32_t* words);

  std::unique_ptr<ByteAutomaton> automaton_;
  std::shared_ptr<const TokenVocabulary> vocab_;
  int64_t max_cached_masks_;
  int64_t num_cached_ = 0;
  std::vector<std::vector<uint32_t>> masks_;  // per state; empty: not computed
  std::vector<int8_t> has_tokens_;            // per state: -1 unknown
  std::vector<uint32_t> scratch_;             // past the cache's bound
  std::vector<int32_t> stack_;                // per trie depth: automaton state
};

}  // namespace troupe::grammar
