#include "grammar/compiled_grammar.hpp"

#include <algorithm>
#include <cstring>

#include "grammar/regex_parser.hpp"

namespace troupe::grammar {

namespace {

Result<ExprPtr> grammar_expr(GrammarKind kind, const std::string& spec, const JsonGrammarOptions& options) {
  switch (kind) {
    case GrammarKind::json_object: return any_json_object(options);
    case GrammarKind::json_schema: return compile_json_schema(spec, options);
    case GrammarKind::regex: return parse_regex(spec);
    case GrammarKind::choice: return compile_choice(spec);
  }
  return make_error(ErrorCode::internal, "unknown grammar kind");
}

}  // namespace

Result<std::unique_ptr<ByteAutomaton>> compile_grammar(GrammarKind kind, const std::string& spec,
                                                       const JsonGrammarOptions& options) {
  auto expr = grammar_expr(kind, spec, options);
  if (!expr.ok()) return expr.error();
  return ByteAutomaton::compile(expr.value());
}

Status check_grammar(GrammarKind kind, const std::string& spec, const JsonGrammarOptions& options) {
  auto expr = grammar_expr(kind, spec, options);
  if (!expr.ok()) return expr.error();
  return ByteAutomaton::check_size(expr.value());
}

CompiledGrammar::CompiledGrammar(std::unique_ptr<ByteAutomaton> automaton, std::shared_ptr<const TokenVocabulary> vocab,
                                 int64_t max_cached_masks)
    : automaton_(std::move(automaton)), vocab_(std::move(vocab)), max_cached_masks_(max_cached_masks) {}

void CompiledGrammar::walk(int32_t state, uint32_t* words) {
  std::memset(words, 0, sizeof(uint32_t) * size_t(vocab_->num_mask_words()));
  const auto& trie = vocab_->trie();
  const auto& ids = vocab_->sorted_ids();
  stack_.resize(1);
  stack_[0] = state;
  const int32_t n = int32_t(trie.size());
  for (int32_t i = 0; i < n;) {
    const auto& node = trie[i];
    const int32_t next = automaton_->step(stack_[node.depth - 1], node.byte);
    if (next == ByteAutomaton::kDead) {
      i = node.end;
      continue;
    }
    if (stack_.size() <= node.depth) stack_.resize(node.depth + 1);
    stack_[node.depth] = next;
    for (int32_t k = node.tokens_begin; k < node.tokens_end; ++k) {
      const int32_t id = ids[k];
      words[id >> 5] |= uint32_t(1) << (id & 31);
    }
    ++i;
  }
}

const uint32_t* CompiledGrammar::token_mask(int32_t state) {
  if (int64_t(masks_.size()) <= state) {
    masks_.resize(size_t(state) + 1);
    has_tokens_.resize(size_t(state) + 1, -1);
  }
  if (!masks_[state].empty()) return masks_[state].data();
  std::vector<uint32_t>* out = &scratch_;
  if (num_cached_ < max_cached_masks_) {
    out = &masks_[state];
    ++num_cached_;
  }
  out->resize(size_t(vocab_->num_mask_words()));
  walk(state, out->data());
  has_tokens_[state] = std::any_of(out->begin(), out->end(), [](uint32_t w) { return w != 0; }) ? 1 : 0;
  return out->data();
}

bool CompiledGrammar::has_tokens(int32_t state) {
  if (int64_t(has_tokens_.size()) <= state || has_tokens_[state] < 0) token_mask(state);
  return has_tokens_[state] == 1;
}

}  // namespace troupe::grammar
