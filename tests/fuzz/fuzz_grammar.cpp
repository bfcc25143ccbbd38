// A structured-output constraint as a client sends it, through everything the server does with it:
// http's check (check_grammar), the engine's compile, then a matcher over the troupe-demo
// vocabulary that accepts the input's text and then follows its own masks for a few tokens, as
// sampling would. Input: byte 0 picks the kind (json_object, json_schema, regex, choice), then the
// spec, then optionally "\x01" and the text to accept. Bad specs must give an error, never a crash, a
// hang or a blow-up; a spec check_grammar accepts must compile.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/compiled_grammar.hpp"
#include "grammar/grammar_matcher.hpp"

namespace {

const std::string kTokenizerJson = std::string(TROUPE_SOURCE_DIR) + "/tests/fixtures/models/troupe-demo/tokenizer.json";

const std::shared_ptr<const troupe::grammar::TokenVocabulary>& vocabulary() {
  static const auto vocab = [] {
    auto v = troupe::grammar::TokenVocabulary::from_tokenizer_json(kTokenizerJson, 2048, {1});
    if (!v.ok()) std::abort();
    return v.value();
  }();
  return vocab;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace troupe::grammar;
  if (size == 0) return 0;
  const auto kind = GrammarKind(data[0] % 4);
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  const size_t cut = rest.find('\x01');
  const std::string spec(rest.substr(0, cut));
  const std::string_view text = cut == std::string_view::npos ? std::string_view() : rest.substr(cut + 1);

  std::shared_ptr<CompiledGrammar> grammar;
  if (kind == GrammarKind::json_object) {
    // The spec plays no part: compiled once (it is the slowest to build), the text still varies.
    static const auto any_object = std::make_shared<CompiledGrammar>(
        compile_grammar(GrammarKind::json_object, "").value(), vocabulary(), 64);
    grammar = any_object;
  } else {
    const bool checked = check_grammar(kind, spec).ok();
    auto automaton = compile_grammar(kind, spec);
    if (checked != automaton.ok()) std::abort();  // http would admit a request the engine then refuses
    if (!automaton.ok()) return 0;
    grammar = std::make_shared<CompiledGrammar>(std::move(automaton.value()), vocabulary(), 64);
  }
  GrammarMatcher matcher(grammar);
  if (!text.empty() && !matcher.accept_bytes(text)) matcher.reset();
  std::vector<uint32_t> mask(size_t(matcher.vocab().num_mask_words()));
  // Follow the masks: each step an allowed id picked by a hash of the text and the step number.
  uint32_t pick = 0;
  for (unsigned char c : text) pick = pick * 31u + c;
  for (int step = 0; step < 16 && !matcher.is_terminated(); ++step) {
    matcher.fill_next_token_mask(mask.data());
    std::vector<int32_t> allowed;
    for (size_t w = 0; w < mask.size(); ++w)
      for (uint32_t bits = mask[w]; bits != 0; bits &= bits - 1) allowed.push_back(int32_t(w * 32 + __builtin_ctz(bits)));
    if (allowed.empty()) break;
    const int32_t id = allowed[(pick + uint32_t(step) * 7919u) % allowed.size()];
    if (!matcher.accept_token(id)) std::abort();  // the mask allowed it
  }
  return 0;
}
