#pragma once
// Decoders of `tokenizer.json`: turn token strings back into text. Supported: ByteLevel, Metaspace,
// Replace (string pattern), ByteFallback, Fuse, Strip, Sequence of these.
#include <string>
#include <vector>

namespace troupe {

struct DecoderStep {
  enum class Kind { byte_level, metaspace, replace, byte_fallback, fuse, strip } kind = Kind::byte_level;
  std::string pattern;  // replace: the string to find; metaspace: the replacement character
  std::string content;  // replace: the replacement; strip: the character to strip
  bool strip_first_space = false;  // metaspace: prepend_scheme != "never"
  int start = 0;                   // strip: how many to remove at the start / stop of each token
  int stop = 0;
};

class TokenDecoder {
 public:
  void add_step(DecoderStep step) { steps_.push_back(std::move(step)); }
  bool empty() const { return steps_.empty(); }
  // Runs the chain over tokens and joins the result (tokens are consumed).
  std::string decode(std::vector<std::string>& tokens) const;

 private:
  std::vector<DecoderStep> steps_;
};

}  // namespace troupe
