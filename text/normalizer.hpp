#pragma once
// Normalizers of `tokenizer.json`: NFC / NFKC / NFD / NFKD (through ICU when built with it),
// Prepend, Replace (string pattern), Lowercase, Sequence of these.
#include <string>
#include <string_view>
#include <vector>

namespace troupe {

struct NormalizerStep {
  enum class Kind { nfc, nfd, nfkc, nfkd, prepend, replace, lowercase } kind = Kind::nfc;
  std::string pattern;  // replace: the string to find
  std::string content;  // prepend: the prefix; replace: the replacement
};

class Normalizer {
 public:
  void add_step(NormalizerStep step) { steps_.push_back(std::move(step)); }
  bool empty() const { return steps_.empty(); }
  // True when Unicode normalization was requested but this build has no ICU (then it is skipped).
  static bool unicode_forms_available();

  // Normalizes text into out (valid UTF-8 in, valid UTF-8 out).
  void run(std::string_view text, std::string& out) const;

 private:
  std::vector<NormalizerStep> steps_;
};

}  // namespace troupe
