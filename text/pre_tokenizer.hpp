#pragma once
// Pre-tokenizers of `tokenizer.json`: cut a normalized text into pieces that BPE encodes one by
// one. Supported: Split (regex or string, all behaviours, invert), ByteLevel (GPT-2 regex,
// add_prefix_space), Metaspace, Sequence of these.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "text/tokenizer_regex.hpp"

namespace troupe {

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

// Text plus the [begin, end) byte ranges of its pieces; steps rewrite both.
struct PreTokenized {
  std::string text;
  std::vector<std::pair<uint32_t, uint32_t>> pieces;
};

struct PreTokenizerStep {
  enum class Kind { split, byte_level, metaspace } kind = Kind::split;
  TokenizerRegex regex;  // split pattern, or GPT-2's pattern for byte_level with use_regex
  bool use_regex = false;
  SplitBehavior behavior = SplitBehavior::isolated;
  bool invert = false;
  bool add_prefix_space = false;
  std::string replacement;       // metaspace: "▁"
  std::string prepend_scheme;    // metaspace: "always", "first", "never"
  bool metaspace_split = true;
};

class PreTokenizer {
 public:
  void add_step(PreTokenizerStep step) { steps_.push_back(std::move(step)); }
  bool empty() const { return steps_.empty(); }
  bool has_byte_level() const;

  // Cuts `out.text` (already set) into `out.pieces`; is_first: the text starts the input.
  void run(PreTokenized& out, bool is_first) const;

 private:
  void split(const PreTokenizerStep& step, PreTokenized& data) const;
  void add_prefix_space(PreTokenized& data) const;
  void metaspace(const PreTokenizerStep& step, PreTokenized& data, bool is_first) const;

  std::vector<PreTokenizerStep> steps_;
};

// GPT-2's pre-tokenizer pattern, used by ByteLevel with use_regex.
inline constexpr const char* kGpt2Pattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

}  // namespace troupe
